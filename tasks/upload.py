"""Upload: get a written file to OpenAI exactly once, however often the task runs and however many runs race.

One logical upload (one run of the :func:`upload_file` task, all its attempts) leaves exactly one usable remote
file per content. Pure functions do the work (:func:`upload_and_wait` composes them); the task adds retries
and logging. Each attempt:

1. **verify** that the file still has the sha256 it was written with: the remote name carries it
   (:func:`remote_name`: ``fine_tune_train.<32 hex>.jsonl``).
2. **find** (:func:`find_remote`) a remote file with that name, size and purpose, not in error or deleted, and
   reuse it (the first in the API's creation order). Nothing is sent.
3. **send**: ``files.create``, streamed from disk, for files up to the part threshold (default 512 MiB, the
   endpoint's limit; FTPREP_UPLOAD_PART_THRESHOLD lowers it); above it the Uploads API (:func:`send_in_parts`):
   ``uploads.create``, 64 MiB parts read from disk one at a time while they are sent (memory stays bounded),
   ``uploads.complete`` with the md5. When the outcome of a send is unknown (connection dropped or timed out
   after the body was sent, a 5xx, a malformed response), **look again** (step 2) before failing the attempt:
   the server may have stored the file.
4. **settle** (:func:`settle`): two runs that raced both created a copy. The canonical copy is the first in the
   API's creation order; a run whose copy is not canonical deletes its own and returns the canonical one, so
   racing runs converge on one file. Copies made since this upload started that are not canonical (a late
   copy from an attempt whose outcome was unknown) are deleted too; older files are never touched.
5. **wait** (:func:`wait_until_processed`) until the file is ``processed`` (polls back off from
   FTPREP_RETRY_BASE_SECONDS up to 15 s); ``error`` fails with the server's ``status_details``; more than
   FTPREP_PROCESSING_TIMEOUT seconds (600) fails and says how to wait longer. Then settle once more.

Retry policy, and how many attempts one logical upload makes:

* The SDK's own retries are off (``max_retries=0`` in ``ftprep/client.py``): it would resend without telling
  anyone, so the only retry layer is this task's Prefect retries and every attempt shows in Prefect's retry
  history. One logical upload makes **at most 1 + FTPREP_UPLOAD_RETRIES task attempts** (5 by default). Each
  attempt sends the file's body at most once (``files.create``), or each part at most ``part_attempts`` (3)
  times (Uploads API; a part is small and idempotent to resend: unused parts are discarded on completion).
* Retried (transient): HTTP 408, 409, 429 and 5xx (unless the server says ``x-should-retry: false``),
  connection errors, timeouts and malformed responses. Never retried (permanent, one attempt, a one-line
  :class:`RemoteError` naming the file and the remedy): every other status, in particular 400, 401, 403, 404,
  422, and a file that fails processing or does not finish processing in time.
* Delays: the task's retry delays (exponential from FTPREP_RETRY_BASE_SECONDS, with jitter, set by the flow),
  but never shorter than the server's ``retry-after-ms`` / ``Retry-After`` (honoured up to 60 s).
* Every failed attempt logs its number, its reason (status code and error class, or the connection error's
  class) and whether it will be retried, e.g. ``attempt 1 of 5 failed: HTTP 429 (RateLimitError): ...;
  Retry-After 2 s; retrying``.
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import openai
from openai import OpenAI
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.utilities.math import lower_clamp_multiple

from ftprep.client import UploadPolicy, upload_policy
from ftprep.errors import FtprepError, InputError, RemoteError
from ftprep.models import RemoteFile
from ftprep.settings import load_settings

PURPOSE = "fine-tune"
MIME_TYPE = "application/jsonl"
TRANSIENT_STATUS = {408, 409, 429, 500, 502, 503, 504}
GONE_STATUSES = {"error", "deleted", "deleting"}  # never reused
DUPLICATE_SLACK_SECONDS = 60  # clock skew allowed when deciding which copies were made by this upload
_CHUNK = 1024 * 1024

_log = logging.getLogger("ftprep.upload")


class MalformedResponse(ValueError):
    """A 2xx response that did not carry the object it should have (the SDK raises JSONDecodeError for bad JSON)."""


class TransientRemoteError(RemoteError):
    """An attempt failed for a reason worth another attempt (the task retries it)."""

    def __init__(self, message: str, reason: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.reason = reason or str(self)
        self.retry_after = retry_after


# --------------------------------------------------------------------------------------------------
# names, classification, messages


def remote_name(path: str | Path, sha256: str) -> str:
    """``fine_tune_train.jsonl`` with content hash ``ab12…`` → ``fine_tune_train.ab12….jsonl`` (32 hex)."""
    p = Path(path)
    return f"{p.stem}.{sha256[:32]}{p.suffix}"


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failure (status code or error class), with no secret in it."""
    if isinstance(exc, TransientRemoteError):
        return exc.reason
    if isinstance(exc, openai.APIStatusError):
        message = getattr(exc, "message", "") or ""
        body = exc.body if isinstance(exc.body, dict) else {}
        body = body["error"] if isinstance(body.get("error"), dict) else body  # the SDK unwraps {"error": ...}
        if isinstance(body.get("message"), str):
            message = body["message"]
        return f"HTTP {exc.status_code} ({type(exc).__name__}): {message}".strip()
    if isinstance(exc, openai.APITimeoutError):
        return "timeout (APITimeoutError)"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return f"connection failed ({type(cause).__name__ if cause else 'APIConnectionError'})"
    if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError, MalformedResponse)):
        return f"malformed response ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: 408, 409, 429, 5xx, connection errors, timeouts, malformed responses."""
    if isinstance(exc, TransientRemoteError):
        return True
    if isinstance(exc, openai.APIStatusError):
        if exc.response.headers.get("x-should-retry") == "false":
            return False
        return exc.status_code in TRANSIENT_STATUS or exc.status_code >= 500
    return isinstance(exc, _UNKNOWN_OUTCOME)


_UNKNOWN_OUTCOME = (openai.APIConnectionError, openai.APIResponseValidationError, json.JSONDecodeError,
                    MalformedResponse)


def outcome_unknown(exc: BaseException) -> bool:
    """The request may have been carried out although it failed: look before sending it again."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500
    return isinstance(exc, _UNKNOWN_OUTCOME)


def retry_after(exc: BaseException, cap: float = 60.0) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, else ``Retry-After`` seconds or date), capped."""
    if isinstance(exc, TransientRemoteError):
        return exc.retry_after
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    seconds = None
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(header)
        if raw is None:
            continue
        try:
            seconds = float(raw) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(raw) if divisor == 1.0 else None
            seconds = email.utils.mktime_tz(parsed) - time.time() if parsed else None
        if seconds is not None:
            break
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


_REMEDIES = {
    400: "check that the file is a valid fine-tuning JSONL file (ftprep validate FILE)",
    401: "check OPENAI_API_KEY",
    403: "check that the key's organisation and project may upload files",
    404: "check OPENAI_BASE_URL",
    413: "lower FTPREP_UPLOAD_PART_THRESHOLD to send it through the Uploads API in parts",
    422: "check that the file is a valid fine-tuning JSONL file (ftprep validate FILE)",
}


def refused(path: str | Path, exc: BaseException) -> RemoteError:
    """The one-line error for a permanent failure: what was refused, why, and what to do."""
    status = getattr(exc, "status_code", None)
    remedy = _REMEDIES.get(status, "see the server's message; the upload is not retried")
    return RemoteError(f"upload of {path} was refused: {describe_error(exc)}; {remedy}")


# --------------------------------------------------------------------------------------------------
# find, verify, settle


def _usable(f: Any, name: str, size: int, purpose: str) -> bool:
    return f.filename == name and f.bytes == size and f.purpose == purpose and f.status not in GONE_STATUSES


def find_copies(client: OpenAI, name: str, size: int, purpose: str = PURPOSE) -> list[Any]:
    """Usable remote files with this name, size and purpose, in the API's creation order (oldest first)."""
    matches = [f for f in client.files.list(purpose=purpose, order="asc") if _usable(f, name, size, purpose)]
    matches.sort(key=lambda f: f.created_at)  # stable: keeps the API's order within one second
    return matches


def find_remote(client: OpenAI, name: str, size: int, purpose: str = PURPOSE):
    """The canonical usable remote file with this name, size and purpose (the oldest), or None."""
    matches = find_copies(client, name, size, purpose)
    return matches[0] if matches else None


def file_digests(path: str | Path, md5: bool = False) -> tuple[str, str | None]:
    """sha256 (and md5 if asked) of a file, read in 1 MiB chunks."""
    sha, m5 = hashlib.sha256(), hashlib.md5() if md5 else None
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            sha.update(view[:n])
            if m5 is not None:
                m5.update(view[:n])
    return sha.hexdigest(), m5.hexdigest() if m5 is not None else None


def _delete(client: OpenAI, file_id: str, logger: Any) -> bool:
    """Delete a duplicate; a few quick tries, a 404 counts as done, a failure only warns (it is a duplicate)."""
    for attempt in range(3):
        try:
            client.files.delete(file_id)
            return True
        except openai.NotFoundError:
            return True
        except Exception as e:  # noqa: BLE001 - a leftover duplicate is not worth failing the upload for
            if attempt == 2 or not is_transient(e):
                logger.warning("Could not delete duplicate remote file %s: %s", file_id, describe_error(e))
                return False
            time.sleep(0.2 * 2**attempt)
    return False


def settle(client: OpenAI, name: str, size: int, purpose: str, mine: Any, since: float, logger: Any = _log):
    """Converge racing uploads on one file; return the canonical copy (``mine`` or an older one).

    ``mine`` is the copy this upload holds. The canonical copy is the first usable one in the API's creation
    order; if it is not ``mine``, ``mine`` is deleted. Other non-canonical copies created since ``since``
    (minus :data:`DUPLICATE_SLACK_SECONDS` of clock skew) are deleted as well: they were made by this upload or
    by a run racing it, and neither hands them out.
    """
    copies = find_copies(client, name, size, purpose)
    if not any(f.id == mine.id for f in copies) and mine.status not in GONE_STATUSES:
        copies.append(mine)  # not listed yet: it is the newest
    if not copies:
        return mine
    canonical = copies[0]
    for f in copies[1:]:
        if f.id == mine.id or f.created_at >= since - DUPLICATE_SLACK_SECONDS:
            if _delete(client, f.id, logger):
                logger.info("Deleted duplicate remote file %s (%s); %s is the copy kept", f.id, name, canonical.id)
    return canonical


# --------------------------------------------------------------------------------------------------
# send


class FileWindow(io.RawIOBase):
    """Bytes ``[offset, offset + length)`` of a file as a seekable stream.

    httpx sends it in 64 KiB reads and rewinds it (``seek(0)``) to send it again, so a part is never held in
    memory. It has no ``fileno()`` on purpose: httpx would take the whole file's size from it.
    """

    def __init__(self, path: str | Path, offset: int, length: int):
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._offset, self._length, self._pos = offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = min(max(base + pos, 0), self._length)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._length - self._pos)
        if n <= 0:
            return 0
        data = os.pread(self._fd, n, self._offset + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _sleep_backoff(policy: UploadPolicy, attempt: int, exc: BaseException | None = None) -> float:
    delay = policy.backoff_seconds * 2**attempt
    delay *= 0.5 + 0.5 * (os.urandom(1)[0] / 255)  # jitter: 50-100 %
    server = retry_after(exc, policy.retry_after_cap) if exc is not None else None
    delay = max(delay, server or 0.0)
    time.sleep(delay)
    return delay


def send_whole(client: OpenAI, path: str | Path, name: str, purpose: str = PURPOSE):
    """``files.create``, the body streamed from the open file."""
    with open(path, "rb") as fh:
        return client.files.create(file=(name, fh, MIME_TYPE), purpose=purpose)


def send_in_parts(client: OpenAI, path: str | Path, name: str, size: int, md5: str, policy: UploadPolicy,
                  purpose: str = PURPOSE, logger: Any = _log):
    """The Uploads API: create, parts of ``policy.part_size`` streamed from disk, complete; returns the file.

    A part that fails transiently is sent again, at most ``policy.part_attempts`` times in all; anything else
    cancels the Upload (best effort) and propagates.
    """
    upload = client.uploads.create(bytes=size, filename=name, mime_type=MIME_TYPE, purpose=purpose)
    part_ids: list[str] = []
    completed = False
    try:
        for number, offset in enumerate(range(0, size, policy.part_size), start=1):
            length = min(policy.part_size, size - offset)
            with FileWindow(path, offset, length) as window:
                for attempt in range(policy.part_attempts):
                    try:
                        part = client.uploads.parts.create(upload.id, data=(f"{name}.part{number}", window))
                        break
                    except Exception as e:
                        if not is_transient(e) or attempt + 1 == policy.part_attempts:
                            raise
                        waited = _sleep_backoff(policy, attempt, e)
                        logger.warning("Part %s of %s (%s bytes) failed: %s; sending it again after %.1f s",
                                       number, upload.id, f"{length:,}", describe_error(e), waited)
            part_ids.append(part.id)
            logger.debug("Sent part %s of %s (%s bytes)", number, upload.id, f"{length:,}")
        done = client.uploads.complete(upload.id, part_ids=part_ids, md5=md5)
        completed = True
    finally:
        if not completed:
            try:
                client.uploads.cancel(upload.id)
            except Exception:  # noqa: BLE001 - best effort: an abandoned Upload expires after an hour anyway
                pass
    if done.file is None:
        raise TransientRemoteError(f"Upload {upload.id} of {path} completed without a file",
                                   reason="completed Upload without a file")
    logger.info("Sent %s through the Uploads API in %s parts (%s)", path, len(part_ids), upload.id)
    return done.file


# --------------------------------------------------------------------------------------------------
# the logical upload


def upload_once(client: OpenAI, path: str | Path, sha256: str, purpose: str = PURPOSE, *,
                policy: UploadPolicy | None = None, logger: Any = _log):
    """Return (file object, reused?): the canonical remote copy of this content, sending it only if none exists.

    Raises the SDK's error (or :class:`json.JSONDecodeError` for a malformed response) when sending failed and
    no stored copy was found, and :class:`InputError` when the file no longer has the content ``sha256``.
    """
    file, reused, _sent = _upload_once(client, path, sha256, purpose, policy=policy, logger=logger)
    return file, reused


def _upload_once(client: OpenAI, path: str | Path, sha256: str, purpose: str = PURPOSE, *,
                 policy: UploadPolicy | None = None, logger: Any = _log, since: float | None = None):
    """:func:`upload_once`, also saying whether a body was sent (a late duplicate may then still appear)."""
    policy = policy or UploadPolicy()
    since = time.time() if since is None else since
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InputError(f"cannot upload {path}: {e.strerror or e}; run prepare again to write it") from None
    name = remote_name(p, sha256)
    parts = size > policy.part_threshold
    actual, md5 = file_digests(p, md5=parts)
    if actual != sha256:
        raise InputError(f"{path} changed since it was written (sha256 {actual[:12]}…, expected {sha256[:12]}…); "
                         "run prepare again to rewrite it")

    existing = find_remote(client, name, size, purpose)
    if existing is not None:
        logger.info("Reused remote file %s (%s, %s bytes, status %s) for %s: same content already uploaded",
                    existing.id, existing.filename, f"{existing.bytes:,}", existing.status, path)
        return existing, True, False

    try:
        if parts:
            created = send_in_parts(client, p, name, size, md5 or "", policy, purpose, logger)
        else:
            created = send_whole(client, p, name, purpose)
        if not isinstance(getattr(created, "id", None), str) or not created.id:
            raise MalformedResponse("the response to the upload names no file")
    except Exception as e:
        if not outcome_unknown(e):
            raise
        logger.warning("Outcome of sending %s unknown (%s); looking for a stored copy", path, describe_error(e))
        try:
            found = find_remote(client, name, size, purpose)
        except Exception:  # noqa: BLE001 - the send's error is the one to report
            found = None
        if found is None:
            raise
        logger.info("Reused remote file %s (%s, %s bytes): stored by the interrupted request or by another run",
                    found.id, found.filename, f"{found.bytes:,}")
        return found, True, True

    if created.status in GONE_STATUSES:
        return created, False, True  # processing failed at once: wait_until_processed reports it
    canonical = settle(client, name, size, purpose, created, since, logger)
    if canonical.id != created.id:
        logger.info("Reused remote file %s (%s): another run uploaded the same content at the same time",
                    canonical.id, name)
        return canonical, True, True
    logger.info("Uploaded %s as %s (%s, %s bytes, status %s)", path, created.id, created.filename,
                f"{created.bytes:,}", created.status)
    return created, False, True


def wait_until_processed(client: OpenAI, file: Any, policy: UploadPolicy | None = None, *, path: str | Path = "",
                         logger: Any = _log):
    """Poll ``files.retrieve`` until the file is ``processed``; RemoteError if it ends in error or takes too long.

    Polls back off from ``policy.backoff_seconds`` to ``policy.max_poll_seconds``; a poll that fails
    transiently is simply repeated; the whole wait is bounded by ``policy.processing_timeout``.
    """
    policy = policy or UploadPolicy()
    what = f"{path} ({file.id}, {file.filename})" if path else f"{file.id} ({file.filename})"
    deadline = time.monotonic() + policy.processing_timeout
    delay = max(policy.backoff_seconds, 0.01)
    while True:
        if file.status == "processed":
            return file
        if file.status in GONE_STATUSES:
            details = " ".join(str(getattr(file, "status_details", None) or "no details given").split())
            raise RemoteError(f"OpenAI could not process {what}: {details}; fix the file and run again")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RemoteError(
                f"{what} was still {file.status!r} after {policy.processing_timeout:g} s; run again later "
                "(the uploaded file is reused) or wait longer with FTPREP_PROCESSING_TIMEOUT=<seconds>"
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, policy.max_poll_seconds)
        try:
            file = client.files.retrieve(file.id)
        except Exception as e:
            if not is_transient(e):
                raise
            logger.warning("Polling %s failed: %s; polling again", file.id, describe_error(e))


def upload_and_wait(client: OpenAI, path: str | Path, sha256: str, purpose: str = PURPOSE, *,
                    policy: UploadPolicy | None = None, logger: Any = _log):
    """One attempt of a logical upload: :func:`upload_once`, :func:`wait_until_processed`, a final settle."""
    policy = policy or UploadPolicy()
    since = time.time()
    file, reused, sent = _upload_once(client, path, sha256, purpose, policy=policy, logger=logger, since=since)
    file = wait_until_processed(client, file, policy, path=path, logger=logger)
    if sent:  # a copy from a request whose outcome was unknown, or from a racing run, may show up late
        canonical = settle(client, file.filename, file.bytes, purpose, file, since, logger)
        if canonical.id != file.id:  # an older copy showed up late: converge on it
            file, reused = wait_until_processed(client, canonical, policy, path=path, logger=logger), True
    return file, reused


# --------------------------------------------------------------------------------------------------
# the Prefect task


def _attempt() -> tuple[int, int]:
    ctx = TaskRunContext.get()
    if ctx is None:
        return 1, 1
    return max(ctx.task_run.run_count, 1), ctx.task.retries + 1


def _min_retry_delay(task_obj: Any, retries_done: int) -> float:
    """The shortest delay Prefect may wait before the next attempt (its jitter can shorten the nominal one)."""
    delays = task_obj.retry_delay_seconds
    if not delays:
        return 0.0
    delay = delays[min(retries_done, len(delays) - 1)] if isinstance(delays, (list, tuple)) else delays
    jitter = task_obj.retry_jitter_factor
    if jitter and delay > 0:
        delay *= max(0.0, lower_clamp_multiple(1 + jitter))
    return float(delay)


def _retry_if_transient(task_obj, task_run, state) -> bool:
    """Prefect's retry condition: retry only transient failures, after any Retry-After, logging the reason."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as e:  # noqa: BLE001 - we only classify it
            exc = e
    transient = exc is not None and is_transient(exc)
    attempt, total = task_run.run_count, task_obj.retries + 1
    reason = describe_error(exc) if exc is not None else "unknown"
    server_wait = retry_after(exc) if transient and exc is not None else None
    wait_note = f"; Retry-After {server_wait:g} s" if server_wait else ""
    get_run_logger().warning("Upload attempt %s of %s failed: %s%s; %s", attempt, total, reason, wait_note,
                             "retrying" if transient else "not retrying (permanent error)")
    if server_wait:
        extra = server_wait - _min_retry_delay(task_obj, attempt - 1)
        if extra > 0:
            time.sleep(extra)
    return transient


@task(
    name="upload",
    # Not cached: every run asks the server whether the file is still there (a scheduled re-upload re-checks
    # the remote copies, reuses what exists and uploads only what is missing or changed).
    cache_policy=NO_CACHE,
    retries=4,
    retry_delay_seconds=[2, 4, 8, 16],
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_if_transient,
)
def upload_file(client: OpenAI, path: str, sha256: str, examples: int, role: str, purpose: str = PURPOSE,
                policy: UploadPolicy | None = None) -> RemoteFile:
    """Upload one JSONL file (or reuse the identical remote file) and wait until OpenAI has processed it.

    ``policy`` defaults to the one the settings (environment, ``.env``) ask for.
    """
    logger = get_run_logger()
    if policy is None:
        policy = upload_policy(load_settings())
    try:
        obj, reused = upload_and_wait(client, path, sha256, purpose, policy=policy, logger=logger)
    except FtprepError:
        raise
    except Exception as e:
        if not is_transient(e):
            if isinstance(e, openai.APIError):
                raise refused(path, e) from None
            raise
        attempt, total = _attempt()
        attempts = f"{total} attempt{'s' if total > 1 else ''}"
        then = ("it will be retried" if attempt < total else
                f"gave up after {attempts}: run again later (a copy stored meanwhile is reused) "
                "or allow more attempts with FTPREP_UPLOAD_RETRIES")
        reason = describe_error(e)
        raise TransientRemoteError(f"upload of {path} failed (attempt {attempt} of {total}): {reason}; {then}",
                                   reason=reason, retry_after=retry_after(e, policy.retry_after_cap)) from None
    return RemoteFile(id=obj.id, filename=obj.filename, bytes=obj.bytes, status=obj.status, purpose=obj.purpose,
                      created_at=obj.created_at, sha256=sha256, examples=examples, role=role, reused=reused)
