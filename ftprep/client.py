"""The one place an OpenAI client is built. Everything else receives the client it is handed."""

from __future__ import annotations

from openai import OpenAI

from ftprep.errors import FtprepError
from ftprep.settings import Settings


class MissingKeyError(FtprepError):
    """No API key is configured."""


def make_client(settings: Settings) -> OpenAI:
    """Build the client from settings.

    The SDK's own retries are switched off (``max_retries=0``): the upload task owns the retry policy, so
    every attempt is visible in Prefect's retry history and one logical upload has a bounded number of
    requests (see ``tasks/upload.py``).
    """
    if not settings.api_key:
        raise MissingKeyError(
            "OPENAI_API_KEY is not set: put it in the environment or in .env to upload "
            "(or pass --no-upload to only write the files)"
        )
    return OpenAI(
        api_key=settings.api_key.get(),
        base_url=settings.base_url,
        max_retries=0,
        timeout=settings.timeout_seconds,
    )
