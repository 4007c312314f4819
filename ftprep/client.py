"""The one place an OpenAI client is built; everything else receives the client it is handed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ftprep.errors import MissingKeyError
from ftprep.settings import Settings

if TYPE_CHECKING:
    from openai import OpenAI


def require_key(settings: Settings) -> None:
    """Refuse, in one line, to go on without an API key (a flow that needs one says so before anything else)."""
    if not settings.has_key:
        raise MissingKeyError(
            "OPENAI_API_KEY is not set: put OPENAI_API_KEY=sk-... in the environment or in .env "
            "(prepare also works without it with --no-upload)"
        )


def make_client(settings: Settings) -> OpenAI:
    """Build the client from settings.

    The SDK's own retries are off (``max_retries=0``): retries are Prefect task retries declared on the tasks
    (:mod:`ftprep.remote`), so every attempt is visible in Prefect's retry history and bounded.
    """
    require_key(settings)
    from openai import OpenAI  # imported when a client is needed: a run with no upload never pays for it

    return OpenAI(api_key=settings.api_key.get_secret_value(), base_url=settings.base_url, max_retries=0,
                  timeout=settings.timeout_seconds)
