"""The one redaction layer: every text that leaves the process passes :func:`redact`.

It removes every secret the settings registered (the API key, URL passwords), any ``sk-…``-shaped token and
the userinfo of any URL. Log records are redacted by :class:`RedactingFilter`, installed on the root and
Prefect's handlers by :func:`install_log_redaction`; errors, results, manifests, Variables and artifacts are
redacted where they are written, through this module.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "[redacted]"
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


class RedactingFilter(logging.Filter):
    """Redacts a log record's message, arguments and exception text in place (always lets it through)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep what we have
            message = str(record.msg)
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if redact(str(exc)) != str(exc):
                record.exc_info, record.exc_text = None, None
                record.msg = f"{record.msg} ({type(exc).__name__}: {redact(str(exc))})"
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Put the redacting filter on every handler of the root, ``prefect`` and ``ftprep`` loggers (idempotent)."""
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "ftprep"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
