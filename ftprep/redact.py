"""The one redaction layer: every text that leaves the process passes :func:`redact`.

It removes every secret the settings registered (the API key, URL passwords), any ``sk-…``-shaped token and
the userinfo of any URL. Log records are redacted by :class:`RedactingFilter`, installed on the root and
Prefect's handlers by :func:`ftprep.logs.install`; errors, results, manifests, Variables and artifacts are
redacted where they are written, through this module.
"""

from __future__ import annotations

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
