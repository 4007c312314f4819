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
   API's creation order; every other copy of the same content (a racing run's, a late copy from an attempt
   whose outcome was unknown, one an earlier run left behind) is deleted, unless a queued or running
   fine-tuning job references it. A run that merely finds several copies settles them the same way.
5. **wait** (:func:`wait_until_processed`) until the file is ``processed`` (polls back off from
   FTPREP_RETRY_BASE_SECONDS up to 15 s); ``error`` fails with the server's ``status_details``; more than
   FTPREP_PROCESSING_TIMEOUT seconds (600) fails and says how to wait longer. Then settle once more.

Retries: the task's Prefect retries, from :mod:`ftprep.remote` (one line per failed attempt; transient failures
only; never sooner than the server's Retry-After). One logical upload makes at most 1 + FTPREP_UPLOAD_RETRIES
attempts; each sends the body at most once (``files.create``), or each part at most ``part_attempts`` times
(Uploads API: a part is small and idempotent to resend; each resend is logged).
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from ftprep import storage
from ftprep.errors import FtprepError, InputError, RemoteError, TransientRemoteError
from ftprep.limits import slot
from ftprep.models import RemoteFile
from ftprep.pause import pause_point
from ftprep.remote import (
    DEFAULT_POLICY,
    MalformedResponse,
    RemotePolicy,
    as_remote_error,
    describe_error,
    is_transient,
    outcome_unknown,
    poll,
)
from ftprep.steps import task

PURPOSE = "fine-tune"
MIME_TYPE = "application/jsonl"
GONE_STATUSES = {"error", "deleted", "deleting"}  # never reused

if TYPE_CHECKING:
    from openai import OpenAI

_log = logging.getLogger("ftprep.upload")


def remote_name(path: str | Path, sha256: str) -> str:
    """``fine_tune_train.jsonl`` with content hash ``ab12…`` → ``fine_tune_train.ab12….jsonl`` (32 hex)."""
    p = Path(storage.name(path))
    return f"{p.stem}.{sha256[:32]}{p.suffix}"


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


def _delete(client: OpenAI, file_id: str, logger: Any) -> bool:
    """Delete a duplicate (one request; a 404 counts as done; a failure only warns: the next run settles it)."""
    import openai

    try:
        client.files.delete(file_id)
    except openai.NotFoundError:
        pass
    except Exception as e:  # noqa: BLE001 - a leftover duplicate is not worth failing the upload for
        logger.warning("Could not delete duplicate remote file %s: %s; a later run removes it", file_id,
                       describe_error(e))
        return False
    return True


def files_in_use(client: OpenAI) -> set[str]:
    """Ids of the files that a queued or running fine-tuning job references (never deleted as duplicates)."""
    try:
        jobs = client.fine_tuning.jobs.list(limit=100)
    except Exception:  # noqa: BLE001 - unknown: then treat every copy as in use
        return {"*"}
    return {f for job in jobs if job.status in ("validating_files", "queued", "running")
            for f in (job.training_file, job.validation_file) if f}


def settle(client: OpenAI, name: str, size: int, purpose: str, mine: Any, logger: Any = _log,
           copies: list[Any] | None = None):
    """Converge the remote copies of one content on one file; return the canonical copy.

    The canonical copy is the first usable one in the API's creation order. Every other copy (this upload's own,
    a racing run's, a late copy of a request whose outcome was unknown, or one left by an earlier run) is
    deleted, unless a queued or running fine-tuning job references it.
    """
    copies = find_copies(client, name, size, purpose) if copies is None else copies
    if mine is not None and not any(f.id == mine.id for f in copies) and mine.status not in GONE_STATUSES:
        copies.append(mine)  # not listed yet: it is the newest
    if len(copies) < 2:
        return copies[0] if copies else mine
    canonical, in_use = copies[0], files_in_use(client)
    for f in copies[1:]:
        if f.id in in_use or "*" in in_use:
            logger.info("Kept duplicate remote file %s (%s): a fine-tuning job uses it", f.id, name)
        elif _delete(client, f.id, logger):
            logger.info("Deleted duplicate remote file %s (%s); %s is the copy kept", f.id, name, canonical.id)
    return canonical


# --------------------------------------------------------------------------------------------------
# send


class FileWindow(io.RawIOBase):
    """Bytes ``[offset, offset + length)`` of a file (a path or a URL) as a seekable stream.

    httpx sends it in 64 KiB reads and rewinds it (``seek(0)``) to send it again, so a part is never held in
    memory. It has no ``fileno()`` on purpose: httpx would take the whole file's size from it.
    """

    def __init__(self, path: str | Path, offset: int, length: int):
        super().__init__()
        self._opened = storage.open_read(path)
        self._fh = self._opened.__enter__()
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
        self._fh.seek(self._offset + self._pos)
        data = self._fh.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._opened.__exit__(None, None, None)
        super().close()


def send_whole(client: OpenAI, path: str | Path, name: str, purpose: str = PURPOSE):
    """``files.create``, the body streamed from the open file."""
    with storage.open_read(path) as fh:
        return client.files.create(file=(name, fh, MIME_TYPE), purpose=purpose)


def send_in_parts(client: OpenAI, path: str | Path, name: str, size: int, md5: str, policy: RemotePolicy,
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
                        waited = policy.delay(attempt, e)
                        time.sleep(waited)
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
                 policy: RemotePolicy | None = None, logger: Any = _log):
    """(file object, reused?, sent?): the canonical remote copy of this content, sending it only if none exists.

    ``sent`` says whether a body was sent (a late duplicate may then still appear). Raises the SDK's error when
    sending failed and no stored copy was found, and :class:`InputError` when the file no longer has the
    content ``sha256``.
    """
    policy = policy or DEFAULT_POLICY
    p = str(path)
    try:
        with storage.store_errors(p):
            size = storage.size(p)
    except (OSError, InputError) as e:
        raise InputError(f"cannot upload {path}: {getattr(e, 'strerror', None) or e}; run prepare again to write it") \
            from None
    name = remote_name(p, sha256)
    parts = size > policy.part_threshold
    with storage.store_errors(p):
        actual, md5 = storage.digests(p, md5=parts)
    if actual != sha256:
        raise InputError(f"{path} changed since it was written (sha256 {actual[:12]}…, expected {sha256[:12]}…); "
                         "run prepare again to rewrite it")

    copies = find_copies(client, name, size, purpose)
    if copies:
        existing = settle(client, name, size, purpose, None, logger, copies) if len(copies) > 1 else copies[0]
        logger.info("Reused remote file %s (%s, %s bytes, status %s) for %s: same content already uploaded",
                    existing.id, existing.filename, f"{existing.bytes:,}", existing.status, path)
        return existing, True, False

    try:
        with slot(policy):
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
    canonical = settle(client, name, size, purpose, created, logger)
    if canonical.id != created.id:
        logger.info("Reused remote file %s (%s): another run uploaded the same content at the same time",
                    canonical.id, name)
        return canonical, True, True
    logger.info("Uploaded %s as %s (%s, %s bytes, status %s)", path, created.id, created.filename,
                f"{created.bytes:,}", created.status)
    return created, False, True


def wait_until_processed(client: OpenAI, file: Any, policy: RemotePolicy | None = None, *, path: str | Path = "",
                         logger: Any = _log, timeout: float | None = None):
    """Poll ``files.retrieve`` until the file is ``processed``; RemoteError if it ends in error or takes too long.

    Bounded by ``timeout`` (default: the policy's FTPREP_PROCESSING_TIMEOUT); see :func:`ftprep.remote.poll`.
    """
    policy = policy or DEFAULT_POLICY
    timeout = policy.processing_timeout if timeout is None else timeout
    what = f"{path} ({file.id}, {file.filename})" if path else f"{file.id} ({file.filename})"
    try:
        file = poll(lambda: client.files.retrieve(file.id), lambda f: f.status in GONE_STATUSES | {"processed"},
                    what=f"processing of {what}", timeout=timeout, policy=policy, describe=lambda f: f.status,
                    logger=logger, value=file)
    except TimeoutError as e:
        raise RemoteError(f"{what} was still {str(e)!r} after {timeout:g} s; run again later (the uploaded file "
                          "is reused) or wait longer with FTPREP_PROCESSING_TIMEOUT=<seconds>") from None
    if file.status in GONE_STATUSES:
        details = " ".join(str(getattr(file, "status_details", None) or "no details given").split())
        raise RemoteError(f"OpenAI could not process {what}: {details}; fix the file and run again")
    return file


def upload_and_wait(client: OpenAI, path: str | Path, sha256: str, purpose: str = PURPOSE, *,
                    policy: RemotePolicy | None = None, logger: Any = _log):
    """One attempt of a logical upload: :func:`upload_once`, :func:`wait_until_processed`, a final settle."""
    policy = policy or DEFAULT_POLICY
    file, reused, sent = upload_once(client, path, sha256, purpose, policy=policy, logger=logger)
    file = wait_until_processed(client, file, policy, path=path, logger=logger)
    if sent:  # a copy from a request whose outcome was unknown, or from a racing run, may show up late
        canonical = settle(client, file.filename, file.bytes, purpose, file, logger)
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


@task(
    name="upload",
    task_run_name="upload-{role}",
    # Not cached: every run asks the server whether the file is still there (a scheduled re-upload re-checks
    # the remote copies, reuses what exists and uploads only what is missing or changed).
    cache_policy=NO_CACHE,
    **DEFAULT_POLICY.task_options(),  # the flow applies the settings' policy with .with_options()
)
def upload_file(client: OpenAI, path: str, sha256: str, examples: int, role: str, purpose: str = PURPOSE,
                policy: RemotePolicy = DEFAULT_POLICY) -> RemoteFile:
    """Upload one JSONL file (or reuse the identical remote file) and wait until OpenAI has processed it."""
    import openai

    logger = get_run_logger()
    pause_point("upload")
    try:
        obj, reused = upload_and_wait(client, path, sha256, purpose, policy=policy, logger=logger)
    except FtprepError:
        raise
    except Exception as e:
        if not isinstance(e, openai.APIError) and not is_transient(e):
            raise
        attempt, total = _attempt()
        raise as_remote_error(f"upload of {path}", e, attempt, total) from None
    return RemoteFile(id=obj.id, filename=obj.filename, bytes=obj.bytes, status=obj.status, purpose=obj.purpose,
                      created_at=obj.created_at, sha256=sha256, examples=examples, role=role, reused=reused)
