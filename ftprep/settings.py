"""Settings from the environment and ``.env``: the only place the API key is read.

The key is held in a :class:`Secret` whose ``repr``/``str`` never show it, so a settings object can be
logged, put in an error message or end up in a traceback without leaking it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import load_dotenv


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # never pickled into a result or a cache
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class Settings:
    api_key: Secret | None = field(default=None)
    base_url: str | None = None
    timeout_seconds: float = 600.0
    upload_retries: int = 4
    retry_base_seconds: float = 2.0
    processing_timeout_seconds: float = 600.0
    upload_part_threshold: int = 512 * 1024 * 1024  # above this, the Uploads API in 64 MiB parts

    @property
    def has_key(self) -> bool:
        return bool(self.api_key)

    @property
    def remote(self) -> str:
        """Where files go, without credentials: used in cache keys and logs."""
        return (self.base_url or "https://api.openai.com/v1").rstrip("/")


def load_settings(env_file: str | os.PathLike | None = None) -> Settings:
    """Read settings from the environment, after loading ``.env`` (which never overrides the environment)."""
    path = Path(env_file) if env_file else Path.cwd() / ".env"
    if path.is_file():
        load_dotenv(path, override=False)
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    base_url = os.environ.get("OPENAI_BASE_URL", "").strip() or None
    return Settings(
        api_key=Secret(key) if key else None,
        base_url=base_url,
        timeout_seconds=_number("FTPREP_OPENAI_TIMEOUT", 600.0),
        upload_retries=int(_number("FTPREP_UPLOAD_RETRIES", 4)),
        retry_base_seconds=_number("FTPREP_RETRY_BASE_SECONDS", 2.0),
        processing_timeout_seconds=_number("FTPREP_PROCESSING_TIMEOUT", 600.0),
        upload_part_threshold=int(_number("FTPREP_UPLOAD_PART_THRESHOLD", 512 * 1024 * 1024)),
    )


def _number(name: str, default: float) -> float:
    from ftprep.errors import InputError

    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{name}={raw!r} is not a number; set it to a number or unset it") from None
    if value < 0:
        raise InputError(f"{name}={raw!r} is negative; set it to zero or more")
    return value
