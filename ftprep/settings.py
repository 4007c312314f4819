"""Settings from the environment and ``.env``: one typed object, the only place a secret is read.

Built once per run (:func:`load_settings`) and handed to whatever needs it; never a flow parameter. The API
key is a :class:`Key` (a :class:`~pydantic.SecretStr`), so printing, logging or pickling the settings never
shows it, and :meth:`Settings.secrets` lists every secret value for the redaction layer (:mod:`ftprep.redact`).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ftprep.errors import InputError
from ftprep.names import DEFAULT_PROJECT, project_problem

MIB = 1024 * 1024
RESULT_STORAGE_ENV = "FTPREP_RESULT_STORAGE"
FILES_CREATE_LIMIT = 512 * MIB  # the largest file ``files.create`` accepts


class Key(SecretStr):
    """A secret that never prints itself and refuses to be pickled (into a result, a cache or a log)."""

    def __reduce__(self):
        raise TypeError("a secret cannot be pickled")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """Every setting ftprep reads, with its environment variable, default and bounds."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True, populate_by_name=True)

    api_key: Key | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    timeout_seconds: Annotated[float, Field(gt=0)] = Field(600.0, validation_alias=_env("FTPREP_OPENAI_TIMEOUT"))
    upload_retries: Annotated[int, Field(ge=0, le=100)] = Field(4, validation_alias=_env("FTPREP_UPLOAD_RETRIES"))
    retry_base_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        2.0, validation_alias=_env("FTPREP_RETRY_BASE_SECONDS"))
    processing_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        600.0, validation_alias=_env("FTPREP_PROCESSING_TIMEOUT"))
    job_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        24 * 3600.0, validation_alias=_env("FTPREP_JOB_TIMEOUT"))
    heartbeat_seconds: Annotated[float, Field(gt=0)] = Field(60.0, validation_alias=_env("FTPREP_HEARTBEAT_SECONDS"))
    upload_part_threshold: Annotated[int, Field(ge=0)] = Field(
        FILES_CREATE_LIMIT, validation_alias=_env("FTPREP_UPLOAD_PART_THRESHOLD"))
    training_price_per_1m: Annotated[float, Field(ge=0)] | None = Field(
        None, validation_alias=_env("FTPREP_TRAINING_PRICE_PER_1M"))
    openai_concurrency: Annotated[int, Field(ge=1)] | None = Field(
        None, validation_alias=_env("FTPREP_OPENAI_CONCURRENCY"))
    openai_rpm: Annotated[int, Field(ge=1)] | None = Field(None, validation_alias=_env("FTPREP_OPENAI_RPM"))
    notify_webhook_url: Key | None = Field(None, validation_alias=_env("FTPREP_NOTIFY_WEBHOOK_URL"))
    # the project of a run whose ``project`` parameter (--project) is not given (ftprep.names: the namespaces)
    project: str = Field(DEFAULT_PROJECT, validation_alias=_env("FTPREP_PROJECT"))
    result_storage: str | None = Field(None, validation_alias=_env(RESULT_STORAGE_ENV))

    @field_validator("api_key", "base_url", "training_price_per_1m", "openai_concurrency", "openai_rpm",
                     "notify_webhook_url", "result_storage", mode="before")
    @classmethod
    def _blank_is_unset(cls, value):
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("project", mode="before")
    @classmethod
    def _project_name(cls, value):
        if value is None or (isinstance(value, str) and not value.strip()):
            return DEFAULT_PROJECT
        if (problem := project_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("timeout_seconds", "retry_base_seconds", "processing_timeout_seconds", "job_timeout_seconds",
                     "heartbeat_seconds", "training_price_per_1m", mode="after")
    @classmethod
    def _finite(cls, value):
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("result_storage", mode="after")
    @classmethod
    def _storage_url(cls, value):
        if value is not None and not re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+", value.strip()):
            raise ValueError("must be a URL such as s3://bucket/prefix (a folder every worker reaches)")
        return value.strip().rstrip("/") if value is not None else None

    @property
    def has_key(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value().strip())

    @property
    def remote(self) -> str:
        """Where files go, without credentials (userinfo, query): used in cache keys, logs and manifests."""
        from ftprep.redact import strip_url_credentials

        return strip_url_credentials((self.base_url or "https://api.openai.com/v1").rstrip("/"))

    @property
    def is_openai(self) -> bool:
        """True when requests go to OpenAI itself (dashboard links make sense only then)."""
        return self.remote.startswith("https://api.openai.com")

    def secrets(self) -> list[str]:
        """Every secret value these settings hold (for the redaction layer)."""
        found = []
        if self.api_key is not None and self.api_key.get_secret_value():
            found.append(self.api_key.get_secret_value())
        if self.base_url:
            from ftprep.redact import url_credentials

            found.extend(url_credentials(self.base_url))
        if self.notify_webhook_url is not None and self.notify_webhook_url.get_secret_value():
            found.append(self.notify_webhook_url.get_secret_value())  # a webhook URL is its own credential
        return found


ENV_NAMES = {name: field.validation_alias.choices[0] for name, field in Settings.model_fields.items()}


def result_storage_url(env_file: str | os.PathLike | None = None) -> str | None:
    """FTPREP_RESULT_STORAGE alone, from the environment or ``.env`` (the environment wins), without checking the
    other settings: the flows read it when they are defined (:mod:`ftprep.results`), before a run loads and
    checks every setting with :func:`load_settings`."""
    from dotenv import dotenv_values

    value = os.environ.get(RESULT_STORAGE_ENV)
    path = Path(env_file) if env_file else Path.cwd() / ".env"
    if value is None and path.is_file():
        value = dotenv_values(path).get(RESULT_STORAGE_ENV)
    value = (value or "").strip().rstrip("/")
    return value or None


def load_settings(env_file: str | os.PathLike | None = None) -> Settings:
    """Read settings from the environment, after ``.env`` in the working folder (the environment wins).

    A value that is not a number, not finite or out of range is an :class:`InputError` naming the variable.
    """
    path = Path(env_file) if env_file else Path.cwd() / ".env"
    try:
        settings = Settings(_env_file=path if path.is_file() else None)
    except ValidationError as e:
        first = e.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        name = next((env for attr, env in ENV_NAMES.items() if field in (attr, env)), field)
        raw = os.environ.get(name, first.get("input"))
        raise InputError(f"{name}={raw!r} is invalid ({first['msg'].lower()}); set it to a valid value or "
                         "unset it") from None
    from ftprep import logs
    from ftprep.redact import register_secrets

    register_secrets(settings.secrets())  # from now on, no text leaves the process with one of them in it
    logs.install()
    return settings
