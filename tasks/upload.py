"""Upload: send a written file to OpenAI once, however often the task runs.

Pure part: the remote file name carries the content hash (:func:`remote_name`), so
:func:`find_remote` can recognise a file that an earlier run, an earlier attempt or a concurrent run
already stored, and :func:`upload_once` reuses it instead of sending it again; :func:`is_transient`
decides which failures are worth another attempt. Task part: :func:`upload_file` adds Prefect retries
with exponential backoff, only for transient failures, and logs each retry's reason.
"""

from __future__ import annotations

from pathlib import Path

import openai
from openai import OpenAI
from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from ftprep.caching import RemoteTarget
from ftprep.errors import RemoteError
from ftprep.models import RemoteFile

PURPOSE = "fine-tune"
TRANSIENT_STATUS = {408, 409, 429, 500, 502, 503, 504}


def remote_name(path: str | Path, sha256: str) -> str:
    """``fine_tune_train.jsonl`` with content hash ``ab12…`` → ``fine_tune_train.ab12….jsonl`` (32 hex)."""
    p = Path(path)
    return f"{p.stem}.{sha256[:32]}{p.suffix}"


def find_remote(client: OpenAI, name: str, size: int, purpose: str = PURPOSE):
    """An existing usable remote file with this name, size and purpose (oldest first), or None."""
    matches = [
        f for f in client.files.list(purpose=purpose)
        if f.filename == name and f.bytes == size and f.purpose == purpose and f.status != "error"
    ]
    return min(matches, key=lambda f: (f.created_at, f.id)) if matches else None


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failure, with no secret in it."""
    if isinstance(exc, openai.APIStatusError):
        message = getattr(exc, "message", "") or ""
        body = exc.body if isinstance(exc.body, dict) else {}
        message = (body.get("error") or {}).get("message", message) if isinstance(body.get("error"), dict) else message
        return f"HTTP {exc.status_code} ({type(exc).__name__}): {message}".strip()
    if isinstance(exc, openai.APITimeoutError):
        return "timeout (APITimeoutError)"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return f"connection failed ({type(cause).__name__ if cause else 'APIConnectionError'})"
    return f"{type(exc).__name__}: {exc}"


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in TRANSIENT_STATUS or exc.status_code >= 500
    return isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError, openai.APIResponseValidationError))


def upload_once(client: OpenAI, path: str, sha256: str, purpose: str = PURPOSE):
    """Return (file object, reused?): the remote copy of this content, uploading it only if none exists."""
    p = Path(path)
    name = remote_name(p, sha256)
    size = p.stat().st_size
    existing = find_remote(client, name, size, purpose)
    if existing is not None:
        return existing, True
    with open(p, "rb") as f:
        created = client.files.create(file=(name, f, "application/jsonl"), purpose=purpose)
    return created, False


def _retry_if_transient(task, task_run, state) -> bool:
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as e:  # noqa: BLE001 - we only classify it
            exc = e
    transient = exc is not None and is_transient(exc)
    get_run_logger().warning(
        "Upload attempt %s failed: %s; %s", task_run.run_count, describe_error(exc) if exc else "unknown",
        "will retry" if transient else "not retrying (permanent error)",
    )
    return transient


@task(
    name="upload",
    cache_policy=TASK_SOURCE + (INPUTS - "client" - "path") + RemoteTarget(param="client"),
    persist_result=True,
    retries=4,
    retry_delay_seconds=[2, 4, 8, 16],
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_if_transient,
)
def upload_file(client: OpenAI, path: str, sha256: str, examples: int, role: str, purpose: str = PURPOSE) -> RemoteFile:
    """Upload one JSONL file with ``files.create(purpose="fine-tune")``, or reuse the identical remote file."""
    logger = get_run_logger()
    try:
        obj, reused = upload_once(client, path, sha256, purpose)
    except openai.APIError as e:
        if is_transient(e):
            raise
        raise RemoteError(f"upload of {path} was refused: {describe_error(e)}") from None
    logger.info(
        "%s %s as %s (%s, %s bytes, status %s)",
        "Reused the remote copy of" if reused else "Uploaded", path, obj.id, obj.filename, f"{obj.bytes:,}", obj.status,
    )
    return RemoteFile(id=obj.id, filename=obj.filename, bytes=obj.bytes, status=obj.status, purpose=obj.purpose,
                      created_at=obj.created_at, sha256=sha256, examples=examples, role=role, reused=reused)
