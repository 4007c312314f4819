"""The one remote-call policy: which failures are transient, how long to wait, and how Prefect retries them.

Everything that talks to OpenAI uses this module:

* **classification** (:func:`is_transient`, :func:`outcome_unknown`) on the SDK's own error types: 408, 409,
  429 and 5xx (unless the server says ``x-should-retry: false``), connection errors, timeouts and malformed
  responses are transient; every other status (400, 401, 403, 404, 422, ...) is permanent and fails after one
  attempt with a one-line :class:`RemoteError` (:func:`refused`).
* **waiting** (:meth:`RemotePolicy.delay`): exponential from ``FTPREP_RETRY_BASE_SECONDS`` with jitter, never
  shorter than the server's ``retry-after-ms`` / ``Retry-After`` (honoured up to ``retry_after_cap``).
* **Prefect retries** (:meth:`RemotePolicy.task_options`): retries are declared on the task (so the UI shows
  them and every attempt is in the task run's state history) with :func:`retry_if_transient` as the retry
  condition, which logs one line per failed attempt and adds any extra wait the server asked for.
* **polling** (:func:`poll`): bounded waits that back off while nothing changes and log a line at a steady
  interval, so a long wait is never silent.

The SDK's own retries are off (``max_retries=0`` in :mod:`ftprep.client`), so nothing retries silently.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ftprep.errors import FtprepError, RemoteError, TransientRemoteError
from ftprep.limits import slot
from ftprep.settings import FILES_CREATE_LIMIT, MIB, Settings

T = TypeVar("T")
TRANSIENT_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_PART_BYTES = 64 * MIB  # the largest part the Uploads API accepts
_log = logging.getLogger("ftprep.remote")


class MalformedResponse(ValueError):
    """A 2xx response that did not carry the object it should have (the SDK raises JSONDecodeError for bad JSON)."""


def _sdk():
    """The openai package if it was imported (an exception can only be one of its classes if it was); a run that
    never talks to OpenAI does not pay for importing it."""
    return sys.modules.get("openai")


def _unknown_outcome() -> tuple[type[BaseException], ...]:
    openai = _sdk()
    sdk = (openai.APIConnectionError, openai.APIResponseValidationError) if openai else ()
    return (*sdk, json.JSONDecodeError, MalformedResponse)


# --------------------------------------------------------------------------------------- classification
def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: 408, 409, 429, 5xx, connection errors, timeouts, malformed responses."""
    if isinstance(exc, TransientRemoteError):
        return True
    openai = _sdk()
    if openai and isinstance(exc, openai.APIStatusError):
        if exc.response.headers.get("x-should-retry") == "false":
            return False
        return exc.status_code in TRANSIENT_STATUS or exc.status_code >= 500
    return isinstance(exc, _unknown_outcome())


def outcome_unknown(exc: BaseException) -> bool:
    """The request may have been carried out although it failed: look before sending it again."""
    openai = _sdk()
    if openai and isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500
    return isinstance(exc, _unknown_outcome())


def retry_after(exc: BaseException | None, cap: float = 60.0) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, else ``Retry-After`` seconds or date), capped."""
    if exc is None:
        return None
    if isinstance(exc, TransientRemoteError):
        return exc.retry_after
    headers = getattr(getattr(exc, "response", None), "headers", None)
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


def _origin(exc: BaseException) -> str | None:
    """The scheme, host and port a failed request went to (never its path, query or credentials), if known."""
    try:
        url = exc.request.url  # type: ignore[attr-defined] - the SDK's errors carry their httpx request
        return f"{url.scheme}://{url.host}{f':{url.port}' if url.port else ''}"
    except Exception:  # noqa: BLE001 - no request, or not an httpx one: say nothing of where
        return None


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failure (status code or error class), with no secret in it."""
    from ftprep.redact import redact

    if isinstance(exc, TransientRemoteError):
        return exc.reason
    if isinstance(exc, FtprepError):
        return str(exc)  # already one redacted line
    openai = _sdk()
    if isinstance(exc, (json.JSONDecodeError, MalformedResponse)):
        return f"malformed response ({type(exc).__name__})"
    if openai is None:
        return redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
    if isinstance(exc, openai.APIStatusError):
        message = getattr(exc, "message", "") or ""
        body = exc.body if isinstance(exc.body, dict) else {}
        body = body["error"] if isinstance(body.get("error"), dict) else body  # the SDK unwraps {"error": ...}
        if isinstance(body.get("message"), str):
            message = body["message"]
        return redact(" ".join(f"HTTP {exc.status_code} ({type(exc).__name__}): {message}".split()))
    if isinstance(exc, openai.APITimeoutError):
        return "timeout (APITimeoutError)"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        where = _origin(exc)
        return redact(f"connection{' to ' + where if where else ''} failed "
                      f"({type(cause).__name__ if cause else 'APIConnectionError'})")
    if isinstance(exc, openai.APIResponseValidationError):
        return f"malformed response ({type(exc).__name__})"
    return redact(" ".join(f"{type(exc).__name__}: {exc}".split()))


REMEDIES = {
    400: "check the request's inputs (for a file: ftprep validate FILE)",
    401: "check OPENAI_API_KEY",
    403: "check that the key's organisation and project may do this",
    404: "check OPENAI_BASE_URL and the model or file id",
    413: "lower FTPREP_UPLOAD_PART_THRESHOLD to send it through the Uploads API in parts",
    422: "check the request's inputs (for a file: ftprep validate FILE)",
}


def refused(what: str, exc: BaseException) -> RemoteError:
    """The one-line error for a permanent failure: what was refused, why, and what to do."""
    remedy = REMEDIES.get(getattr(exc, "status_code", None), "see the server's message; it is not retried")
    return RemoteError(f"{what} was refused: {describe_error(exc)}; {remedy}")


def as_remote_error(what: str, exc: BaseException, attempt: int = 1, total: int = 1) -> RemoteError:
    """Turn an SDK failure into this module's errors: transient ones say whether they will be retried."""
    if not is_transient(exc):
        return refused(what, exc)
    reason = describe_error(exc)
    openai = _sdk()
    unreachable = openai is not None and isinstance(exc, openai.APIConnectionError) and \
        not isinstance(exc, openai.APITimeoutError)
    where = _origin(exc) if unreachable else None
    first = (f"check that {where} is the right address (OPENAI_BASE_URL) and reachable, then run again"
             if where else "run again later")
    then = ("it will be retried" if attempt < total else
            f"gave up after {total} attempt{'s' if total > 1 else ''}: {first}, or allow more attempts "
            "with FTPREP_UPLOAD_RETRIES")
    return TransientRemoteError(f"{what} failed (attempt {attempt} of {total}): {reason}; {then}", reason=reason,
                                retry_after=retry_after(exc))


# ------------------------------------------------------------------------------------------- the policy
@dataclass(frozen=True)
class RemotePolicy:
    """How every remote call is retried and waited for; built from :class:`Settings` by :meth:`from_settings`.

    ``retries``: Prefect retries after the first attempt (FTPREP_UPLOAD_RETRIES). ``backoff_seconds``: the
    first retry delay, doubling (FTPREP_RETRY_BASE_SECONDS). ``processing_timeout``: the longest wait for a
    file to be processed (FTPREP_PROCESSING_TIMEOUT); ``job_timeout``: the longest wait for a fine-tuning job
    to end (FTPREP_JOB_TIMEOUT); ``heartbeat_seconds``: the interval of the "still waiting" line while a wait
    sees no change (FTPREP_HEARTBEAT_SECONDS). ``part_threshold``: files larger than
    this go through the Uploads API in ``part_size`` parts (FTPREP_UPLOAD_PART_THRESHOLD). ``part_attempts``:
    sends of one part within an upload attempt (each resend logged).
    """

    retries: int = 4
    backoff_seconds: float = 2.0
    max_backoff_seconds: float = 300.0
    retry_after_cap: float = 60.0
    processing_timeout: float = 600.0
    job_timeout: float = 24 * 3600.0
    max_poll_seconds: float = 15.0
    heartbeat_seconds: float = 60.0
    part_threshold: int = FILES_CREATE_LIMIT
    part_size: int = MAX_PART_BYTES
    part_attempts: int = 3
    concurrency: int | None = None
    rpm: int | None = None
    lease_seconds: float = 60.0

    def __post_init__(self) -> None:
        from ftprep.errors import InputError

        if not 0 < self.part_size <= MAX_PART_BYTES:
            raise InputError(f"upload part size {self.part_size} is not between 1 and {MAX_PART_BYTES} bytes")
        if self.part_threshold < 0:
            raise InputError(f"FTPREP_UPLOAD_PART_THRESHOLD={self.part_threshold} is negative; set 0 or more")
        if self.part_attempts < 1 or self.retries < 0:
            raise InputError("retry counts must be zero or more")

    @classmethod
    def from_settings(cls, settings: Settings) -> RemotePolicy:
        return cls(retries=settings.upload_retries, backoff_seconds=settings.retry_base_seconds,
                   processing_timeout=settings.processing_timeout_seconds, job_timeout=settings.job_timeout_seconds,
                   heartbeat_seconds=settings.heartbeat_seconds,
                   concurrency=settings.openai_concurrency, rpm=settings.openai_rpm,
                   part_threshold=min(int(settings.upload_part_threshold), FILES_CREATE_LIMIT))

    def with_(self, **changes: Any) -> RemotePolicy:
        return replace(self, **changes)

    @property
    def attempts(self) -> int:
        return 1 + self.retries

    def delay(self, retry: int, exc: BaseException | None = None) -> float:
        """The wait before retry number ``retry`` (0-based): exponential with jitter, >= Retry-After."""
        return jittered(self.nominal(retry), exc, self.retry_after_cap)

    def nominal(self, retry: int) -> float:
        """The delay before retry number ``retry`` (0-based) without jitter: doubling from the base, capped."""
        return min(self.backoff_seconds * 2**retry, self.max_backoff_seconds)

    def retry_delays(self) -> list[float]:
        """Prefect's ``retry_delay_seconds``: the nominal delays (the jitter is added by the retry condition)."""
        return [self.nominal(i) for i in range(self.retries)]

    def task_options(self) -> dict[str, Any]:
        """Retries as Prefect task options (for ``@task(**...)`` and ``task.with_options(**...)``)."""
        return {"retries": self.retries, "retry_delay_seconds": self.retry_delays() or 0,
                "retry_condition_fn": retry_if_transient}


DEFAULT_POLICY = RemotePolicy()


def jittered(nominal: float, exc: BaseException | None = None, cap: float = 60.0) -> float:
    """``nominal`` plus 0-50 % jitter, but never shorter than the server's Retry-After (capped at ``cap``)."""
    return max(nominal * (1 + 0.5 * random.random()), retry_after(exc, cap) or 0.0)


def retry_if_transient(task_obj: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: one line per failed attempt; retry only transient failures.

    The line reads ``upload-train: attempt 1 of 5 failed: HTTP 503 (InternalServerError): ...; retrying in
    1.8 s``. The jitter and any longer ``Retry-After`` are waited for here, on top of Prefect's own delay.
    """
    from prefect.logging import get_run_logger

    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as e:  # noqa: BLE001 - we only classify it
            exc = e
    transient = exc is not None and is_transient(exc)
    attempt, total = task_run.run_count, task_obj.retries + 1
    reason = describe_error(exc) if exc is not None else "unknown"
    if not transient:
        get_run_logger().warning("%s: attempt %s of %s failed: %s; not retrying (permanent error)", task_run.name,
                                 attempt, total, reason)
        return False
    delays = task_obj.retry_delay_seconds or 0
    nominal = float(delays[min(attempt - 1, len(delays) - 1)] if isinstance(delays, (list, tuple)) else delays)
    server = retry_after(exc)
    wait = jittered(nominal, exc)
    asked = f"; Retry-After {server:g} s" if server else ""
    get_run_logger().warning("%s: attempt %s of %s failed: %s%s; retrying in %.1f s", task_run.name, attempt, total,
                             reason, asked, wait)
    if wait > nominal:
        time.sleep(wait - nominal)
    return True


# ----------------------------------------------------------------------------------------------- polling
def poll(fetch: Callable[[], T], done: Callable[[T], bool], *, what: str, timeout: float, policy: RemotePolicy,
         describe: Callable[[T], str] = str, logger: Any = _log, value: T | None = None,
         base: float | None = None, cap: float | None = None) -> T:
    """Call ``fetch`` until ``done(value)``; return the value. Bounded by ``timeout`` seconds.

    ``value`` is what the caller already has (then the first fetch waits one delay). Polls back off from
    ``base`` (the policy's first delay) to ``cap`` while ``describe(value)`` stays the same, and come back to
    ``base`` after a change. A poll that fails transiently is a missed poll (logged); a permanent failure raises
    :class:`RemoteError`. While nothing changes, a line is logged every ``policy.heartbeat_seconds``. On
    timeout: :class:`TimeoutError` carrying the last description, for the caller to phrase.
    """
    base = max(policy.backoff_seconds if base is None else base, 0.01)
    cap = max(policy.max_poll_seconds if cap is None else cap, base)
    started = time.monotonic()
    deadline, beat = started + timeout, max(policy.heartbeat_seconds, 0.01)
    heartbeat = started + beat
    delay, wait_first = base, value is not None

    def sleep_until(until: float) -> None:
        """Sleep until ``until`` (monotonic), logging the heartbeat line whenever it falls due meanwhile."""
        nonlocal heartbeat
        while (now := time.monotonic()) < until:
            if now >= heartbeat:
                logger.info("Still waiting for %s: %s after %.0f s (gives up after %.0f s)", what,
                            describe(value) if value is not None else "no answer yet", now - started, timeout)
                heartbeat = now + beat
            time.sleep(min(until, heartbeat) - now)

    while True:
        if value is not None and done(value):
            return value
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError(describe(value) if value is not None else "no answer")
        if wait_first:
            sleep_until(min(now + delay, deadline))
        wait_first = True
        try:
            with slot(policy):
                new = fetch()
        except Exception as e:
            if not is_transient(e):
                raise refused(f"reading {what}", e) from None
            logger.warning("Polling %s failed: %s; polling again", what, describe_error(e))
            delay = min(cap, delay * 2)
            continue
        same = value is not None and describe(value) == describe(new)
        delay = min(cap, delay * 2) if same else base
        if not same:
            heartbeat = time.monotonic() + beat  # the line is for waits where nothing changes
        value = new
