"""What reaches a log: redacted, one line per expected error, one line per retry (filters on every handler)."""

from __future__ import annotations

import logging
import re
import threading

from ftprep.errors import FtprepError
from ftprep.redact import redact

# Prefect's own line for a failed attempt that will be retried: ftprep's retry condition already logged one
# line with the reason and the wait (ftprep.remote.retry_if_transient).
_PREFECT_RETRY = re.compile(r"^Task run failed with exception: .* - Retry \d+/\d+ will start")


class RedactingFilter(logging.Filter):
    """Redacts a log record's message, arguments and traceback in place (always lets it through).

    A traceback is kept, redacted: it becomes the record's ``exc_text``, which handlers print as they would have
    printed ``exc_info`` (now None, so no handler formats the exception again from the object).
    """

    _format = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep what we have
            message = str(record.msg)
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = record.exc_text or self._format.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def expected_in(exc: BaseException | None) -> FtprepError | None:
    """The expected error an exception is or carries: Prefect wraps a parameter check's error (a worker's flow
    process validates the run's parameters before the flow body runs) in its own ``ParameterTypeError``."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, FtprepError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


class OneLineErrors(logging.Filter):
    """An expected error (:class:`FtprepError`) is logged once, as one line, with no traceback.

    The first record that carries it becomes ``<message>`` at ERROR level; later records of Prefect's that only
    repeat it (the task's and the flow's "Encountered exception", "Finished in state Failed(...)") are dropped.
    Prefect's own "Task run failed ... Retry N/M will start" lines are dropped too: ftprep's retry condition
    logs one line per retry with its reason and wait.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "ftprep_one_line", False):
            return True  # already decided (the same record meets this filter on its logger and its handlers)
        record.ftprep_one_line = True
        exc = expected_in(record.exc_info[1] if record.exc_info else None)
        message = record.getMessage()
        if record.name.startswith("prefect") and _PREFECT_RETRY.match(message):
            return False
        if exc is not None:
            text = str(exc)
            with self._lock:
                if text in self._seen:
                    return False
                self._seen.add(text)
            record.msg, record.args, record.exc_info, record.exc_text = text, None, None, None
            record.levelno, record.levelname = logging.ERROR, "ERROR"
            record.ftprep_expected = True  # the ftprep command prints it itself, as `error: ...`
            return True
        if record.name.startswith("prefect") and self._seen:
            with self._lock:
                return not any(text in message for text in self._seen)
        return True


class QuietExpectedOnConsole(logging.Filter):
    """For the ``ftprep`` command: its terminal gets the expected error once, as the command's own ``error:``
    line, not also as a log line (the run's logs on the server keep it); and not Prefect's "Still processing
    items" lines, written while its log and event workers flush at exit on a busy machine (after that line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "ftprep_expected", False):
            return False
        return not (record.name.endswith("Worker") and str(record.msg).startswith("Still processing items"))


# OneLineErrors first: it needs the record's exception object, which RedactingFilter replaces by redacted text
_FILTERS = (OneLineErrors(), RedactingFilter())
_QUIET = QuietExpectedOnConsole()


def quiet_expected_on_console() -> None:
    """Drop expected-error records from the console handlers only (the command prints them itself)."""
    from prefect.logging.handlers import APILogHandler

    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, APILogHandler) \
                    and _QUIET not in handler.filters:
                handler.addFilter(_QUIET)
_LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "ftprep")


def install() -> None:
    """Put ftprep's filters on every handler of the root, Prefect's and ftprep's loggers (idempotent).

    Called when settings load, i.e. at the start of every flow run, in the CLI, a worker's flow process or
    ``serve``; handlers added later by Prefect are covered at the next call.
    """
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for flt in _FILTERS:
            if flt not in logger.filters:
                logger.addFilter(flt)
            for handler in logger.handlers:
                if flt not in handler.filters:
                    handler.addFilter(flt)
