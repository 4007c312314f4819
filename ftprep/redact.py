"""The one redaction layer: every text that leaves the process passes :func:`redact`.

It removes every secret the settings registered (the API key, URL passwords), any ``sk-…``-shaped token and
the userinfo of any URL. Log records are redacted by :class:`RedactingFilter`, installed on the root and
Prefect's handlers by :func:`ftprep.logs.install`; an unexpected exception leaving a task or flow by
:func:`redact_exception` (applied by :mod:`ftprep.steps`), before Prefect makes it a state message and a result;
expected errors, results, manifests, Variables and artifacts are redacted where they are written, through this
module.
"""

from __future__ import annotations

import re
import threading
import traceback
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "(redacted)"  # not in brackets: Rich (Prefect's CLI) reads "[redacted]" as a style and drops it
_KEY_SHAPE = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secrets(values: list[str] | tuple[str, ...]) -> None:
    """Remember secret values (of 4 characters or more) to be removed from every text from now on."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= 4)


def redact(text: Any) -> str:
    """``text`` as a string with every known secret, key-shaped token and URL userinfo replaced."""
    s = text if isinstance(text, str) else str(text)
    if not s:
        return s
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in s:
            s = s.replace(secret, MASK)
    s = _KEY_SHAPE.sub(MASK, s)
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", s)


def redact_obj(value: Any) -> Any:
    """Redact every string inside a JSON-like value (dicts, lists, tuples), keeping its shape."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_obj(k): redact_obj(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_obj(v) for v in value)
    return value


def _exception_text(exc: BaseException) -> str:
    """Everything of ``exc`` that could be shown or stored: its traceback with the exceptions it was raised from
    (as a log or terminal shows it) and what pickling keeps (its args and attributes)."""
    parts = ["".join(traceback.format_exception(exc))]
    for value in (exc.args, getattr(exc, "__dict__", {})):
        try:
            parts.append(repr(value))
        except Exception:  # noqa: BLE001 - an attribute that cannot show itself shows nothing either
            pass
    return "\n".join(parts)


def redact_exception(exc: BaseException) -> BaseException:
    """``exc`` itself when no secret is in any of its text; else a :class:`~ftprep.errors.RedactedError` with its
    type name and redacted message, its traceback, and the exception it was raised from as a redacted note.

    Expected errors (:class:`~ftprep.errors.FtprepError`) are redacted when made, and come back as they are.
    """
    from ftprep.errors import FtprepError, RedactedError

    if isinstance(exc, FtprepError):
        return exc
    text = _exception_text(exc)
    if redact(text) == text:
        return exc
    clean = RedactedError(redact(f"{type(exc).__name__}: {exc}"))
    cause = exc.__cause__ if exc.__cause__ is not None or exc.__suppress_context__ else exc.__context__
    if cause is not None:
        clean.add_note(redact("raised from:\n" + "".join(traceback.format_exception(cause)).rstrip()))
    return clean.with_traceback(exc.__traceback__)


def url_credentials(url: str) -> list[str]:
    """The username and password in a URL's userinfo, if any."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    return [v for v in (parts.username, parts.password) if v]


def strip_url_credentials(url: str) -> str:
    """The URL without userinfo (``https://user:pw@host/v1`` → ``https://host/v1``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
