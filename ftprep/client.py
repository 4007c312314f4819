"""The one place an OpenAI client is built, and the upload policy derived from the same settings.

Everything else receives the client (and the policy) it is handed.
"""

from __future__ import annotations

from dataclasses import dataclass

from openai import OpenAI

from ftprep.errors import FtprepError, InputError
from ftprep.settings import Settings

MIB = 1024 * 1024
FILES_CREATE_LIMIT = 512 * MIB  # the largest file ``files.create`` accepts
MAX_PART_BYTES = 64 * MIB  # the largest part the Uploads API accepts


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
            "OPENAI_API_KEY is not set: put OPENAI_API_KEY=sk-... in the environment or in .env "
            "(prepare also works without it with --no-upload)"
        )
    return OpenAI(
        api_key=settings.api_key.get(),
        base_url=settings.base_url,
        max_retries=0,
        timeout=settings.timeout_seconds,
    )


@dataclass(frozen=True)
class UploadPolicy:
    """How ``tasks/upload.py`` sends one file; holds no secret and does not change what is uploaded.

    ``part_threshold``: files larger than this go through the Uploads API in ``part_size`` parts
    (FTPREP_UPLOAD_PART_THRESHOLD, default 512 MiB, the ``files.create`` limit). ``part_attempts``: tries per
    part, within one task attempt, when a part fails transiently. ``processing_timeout``: longest wait for
    the file to be processed (FTPREP_PROCESSING_TIMEOUT). ``backoff_seconds``: first delay between part
    tries and between processing polls, doubling up to ``max_poll_seconds`` (FTPREP_RETRY_BASE_SECONDS).
    ``retry_after_cap``: the longest server ``Retry-After`` that is honoured.
    """

    part_threshold: int = FILES_CREATE_LIMIT
    part_size: int = MAX_PART_BYTES
    part_attempts: int = 3
    processing_timeout: float = 600.0
    backoff_seconds: float = 2.0
    max_poll_seconds: float = 15.0
    retry_after_cap: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.part_size <= MAX_PART_BYTES:
            raise InputError(f"upload part size {self.part_size} is not between 1 and {MAX_PART_BYTES} bytes")
        if self.part_threshold < 0:
            raise InputError(f"FTPREP_UPLOAD_PART_THRESHOLD={self.part_threshold} is negative; set 0 or more")
        if self.part_attempts < 1:
            raise InputError(f"upload part attempts {self.part_attempts} must be at least 1")


def upload_policy(settings: Settings) -> UploadPolicy:
    """The upload policy the settings ask for (the part threshold is capped at the ``files.create`` limit)."""
    return UploadPolicy(
        part_threshold=min(int(settings.upload_part_threshold), FILES_CREATE_LIMIT),
        processing_timeout=settings.processing_timeout_seconds,
        backoff_seconds=settings.retry_base_seconds,
    )
