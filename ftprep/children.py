"""Child processes ftprep starts (Prefect's server, the chart and validation processes): no secret, no orphan."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable

# What any child needs to run: the program path, home, locale, temporary folder and certificates.
KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN", "AUTH", "CREDENTIAL")
_USERINFO = re.compile(r"://[^/@\s]*:[^/@\s]*@")  # scheme://user:password@
# the chart and validation processes: when the command itself needs a core, it gets it (see lower_priority)
HELPER_NICE = 10
# how a helper is started (with ``preexec_fn=preexec(helper=True)``): a process group of its own, so that the
# terminal's Ctrl-C reaches only the command (which stops it) and a group kill reaches it whole
HELPER_GROUP = {"process_group": 0}


def secret_name(name: str) -> bool:
    """Does an environment variable's name say it holds a credential?"""
    return any(word in name.upper() for word in SECRET_WORDS)


def environment(*names: str, prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment cut down to :data:`KEEP`, ``names`` (chosen by the caller, none a credential)
    and the variables starting with one of ``prefixes`` whose name does not say they hold a credential; never a
    value holding a URL with a password (a proxy's ``http://user:password@host``)."""
    return {k: v for k, v in os.environ.items()
            if (k in KEEP or k in names or (k.startswith(prefixes) and not secret_name(k)))
            and not _USERINFO.search(v)}


def die_with_parent(parent: int | None = None) -> None:
    """Linux: this process gets SIGKILL when its parent ends, however it ends (``PR_SET_PDEATHSIG``); elsewhere
    nothing. Call it in the child: between fork and exec (``preexec_fn``) or first thing in a forked worker, with
    ``parent`` the pid that forked it: a parent that ended before the signal was set (it would never come) ends
    this process now."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return  # no libc by that name: the explicit stops on exit still apply
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def close_pipes(child: subprocess.Popen) -> None:
    """Close our ends of a helper child's stdin and stdout: it reads the end of its input and leaves. Not waited
    for (its interpreter's exit is no part of the run); the subprocess module reaps it."""
    for stream in (child.stdin, child.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


def lower_priority(nice: int = HELPER_NICE) -> None:
    """Run this helper process (and what it forks) at a lower CPU priority, in the command's session, and let it
    write to the terminal from its own process group (``stty tostop`` would otherwise stop it at its first
    progress bar). Call it between fork and exec.

    The helper shares the command's session, and so its autogroup: Linux first shares the CPU equally between
    sessions, and a helper in a session of its own would take as much CPU as the whole command while it imports
    (nice ranks processes only within a session). In the command's session it yields to the command alone:
    against other programs the session competes as one, as a single-process command would."""
    try:
        os.nice(nice)
    except OSError:  # not permitted: it runs at the command's priority
        pass
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)


def preexec(helper: bool = False) -> Callable[[], None] | None:
    """``preexec_fn`` for :class:`subprocess.Popen`, made in the parent: :func:`die_with_parent` where it does
    something; ``helper``: also :func:`lower_priority` (a process that works ahead for the command, beside it)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def child() -> None:
        if helper:
            lower_priority()
        die_with_parent(parent)

    return child
