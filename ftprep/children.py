"""Child processes ftprep starts (Prefect's server, the chart and validation processes): no secret, no orphan."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import cache
from importlib.machinery import ExtensionFileLoader
from pathlib import Path
from types import FrameType
from typing import Any

# What any child needs to run: the program path, home, locale, temporary folder and certificates.
KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN", "AUTH", "CREDENTIAL")
_USERINFO = re.compile(r"://[^/@\s]*:[^/@\s]*@")  # scheme://user:password@
# the chart and validation processes: when the command itself needs a core, it gets it (see lower_priority)
HELPER_NICE = 10
# how a helper is started (with ``preexec_fn=preexec(helper=True)``): out of the terminal's foreground group, so
# that the terminal's Ctrl-C reaches only the command (which stops the helper), and killed as a group whole. On
# Linux in the command's session (see lower_priority; its preexec ignores SIGTTOU, so ``stty tostop`` cannot stop
# it at its progress bar); elsewhere, with no lower priority to gain, in a session of its own as before
HELPER_GROUP: dict[str, Any] = {"process_group": 0} if sys.platform.startswith("linux") else {"start_new_session": True}


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


def ranks_within_group(autogroup: Path = Path("/proc/sys/kernel/sched_autogroup_enabled"),
                       cgroup: Path = Path("/proc/self/cgroup"), session: Path = Path("/proc/self/autogroup")) -> bool:
    """Would a nice value rank this process's children only against the processes of its own session or cgroup?
    So it is under autogroup scheduling (Linux's default: the CPU is shared between sessions first) in a session's
    own autogroup, or in a cpu cgroup of its own (a container, a systemd unit with CPU accounting). Not on a kernel
    with neither, nor in the default autogroup (``session`` empty: no ``setsid`` above it since boot, so it shares
    the root group with everything else), where it would rank a helper against every busy process on the machine
    and slow the validation the command waits for."""
    try:
        if autogroup.read_text().strip() == "1" and session.read_text().strip():
            return True
        for line in cgroup.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if ("cpu" in controllers.split(",") or not controllers) and path.strip() != "/":
                return True
    except (OSError, ValueError):
        pass
    return False


ranked_within_group = cache(ranks_within_group)  # this process's answer, read once


def lower_priority(nice: int = HELPER_NICE) -> None:
    """Run this helper process (and what it forks) at a lower CPU priority, and let it write to the terminal from
    its own process group. Call it between fork and exec, in the command's session.

    A helper in a session of its own took as much CPU as the whole command while it imported (autogroup
    scheduling shares the CPU between sessions first, and a nice value ranks a process only within its session).
    In the command's session, at nice 10, it yields to the command alone: against other programs the session
    competes as one, as a single-process command would."""
    if ranked_within_group():
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
    ranked_within_group()  # read here, not in the forked child

    def child() -> None:
        if helper:
            lower_priority()
        die_with_parent(parent)

    return child


# --------------------------------------------- a Ctrl-C handler that meets a fork or a C extension's start
_forking = False  # inside os.fork, from its first at-fork hook to its last (see track_forks)
# where a C extension module's initialization runs (create_module: single-phase init; exec_module: multi-phase)
_EXTENSION_STEPS = (ExtensionFileLoader.create_module.__code__, ExtensionFileLoader.exec_module.__code__)


def _fork_begins() -> None:
    global _forking
    _forking = True


def _fork_ends() -> None:
    global _forking
    _forking = False


def track_forks() -> None:
    """Mark the span of every later ``os.fork`` of this process (a helper or a worker being started), for
    :func:`interrupt_again_if_unsafe`. Call it once, after the imports whose at-fork hooks it must span: registered
    last, its "before" runs first and its "after"s last."""
    os.register_at_fork(before=_fork_begins, after_in_parent=_fork_ends, after_in_child=_fork_ends)


def in_extension_init(frame: FrameType | None) -> bool:
    """Is ``frame`` (a signal handler's) inside a C extension module's initialization, or in Python code that
    initialization called (the modules it imports)? (Not a module built into the interpreter: none needs it.)"""
    while frame is not None:
        if frame.f_code in _EXTENSION_STEPS:
            return True
        frame = frame.f_back
    return False


def interrupt_again_if_unsafe(frame: FrameType | None) -> bool:
    """For a SIGINT handler that raises KeyboardInterrupt, called with the handler's ``frame``: where an exception
    would be lost or fatal, send the Ctrl-C again 10 ms later and return True (the handler then returns at once).

    * Inside a fork's at-fork hooks an exception is only printed, with a traceback ("Exception ignored in:
      <function _releaseLock ...>"), and lost.
    * Inside a C extension module's initialization, an import it makes fails with it, and an extension that
      assumes its imports succeed crashes: orjson's (imported by ftprep/tokens.py) dies with SIGSEGV.
    Either is over within milliseconds; a longer one is met again and waited for again."""
    if not (_forking or in_extension_init(frame)):
        return False
    _interrupt_again()
    return True


def _interrupt_again() -> None:
    again = threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT))
    again.daemon = True
    again.start()


def resend_lost_interrupts(handler: Callable[[int, FrameType | None], Any]) -> None:
    """Where Python can only print an exception and drop it ("Exception ignored in: ..."; a finalizer, a callback
    of C code), a KeyboardInterrupt that ``handler`` itself raised there is not printed: ``handler`` is set again
    (it may have set later Ctrl-Cs aside) and the Ctrl-C comes again 10 ms later. Anything else, a library's own
    KeyboardInterrupt included, is printed as before. Call it from the main thread, where the handler is set."""
    printed = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        tb = unraisable.exc_traceback
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        raised_by_handler = tb is not None and tb.tb_frame.f_code is handler.__code__
        if not (raised_by_handler and isinstance(unraisable.exc_value, KeyboardInterrupt)
                and threading.current_thread() is threading.main_thread()):
            printed(unraisable)
            return
        signal.signal(signal.SIGINT, handler)
        _interrupt_again()

    sys.unraisablehook = hook
