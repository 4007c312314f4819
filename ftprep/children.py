"""Child processes ftprep starts (Prefect's server, the chart and validation processes): no secret, no orphan."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import sys
from collections.abc import Callable

# What any child needs to run: the program path, home, locale, temporary folder and certificates.
KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN", "AUTH", "CREDENTIAL")
_USERINFO = re.compile(r"://[^/@\s]*:[^/@\s]*@")  # scheme://user:password@


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


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent ends, however it ends (``PR_SET_PDEATHSIG``); elsewhere
    nothing. Call it in the child: between fork and exec (``preexec_fn``) or first thing in a forked worker."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # no libc by that name: the explicit stops on exit still apply


def preexec() -> Callable[[], None] | None:
    """``preexec_fn`` for :class:`subprocess.Popen`: :func:`die_with_parent` where it does something."""
    return die_with_parent if sys.platform.startswith("linux") else None
