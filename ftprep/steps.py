"""ftprep's ``task`` and ``flow`` decorators: Prefect's, with an unexpected exception redacted as it leaves.

Every task of ``tasks/`` and flow of ``flows/`` is made with these. Prefect turns an exception that leaves a task
or flow into the run's state message (``Failed('... ValueError: ...')``), its persisted result and the
"Encountered exception" log line, all from the exception object itself; so the one place to redact it is where it
leaves the function, before Prefect sees it. An exception whose text (message, the exceptions it was raised from,
its attributes) holds a secret leaves as a :class:`~ftprep.errors.RedactedError`
(:func:`ftprep.redact.redact_exception`); any other, and every expected error, leaves unchanged.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import prefect
from prefect.utilities.hashing import file_hash

from ftprep import logs
from ftprep.heartbeat import beating
from ftprep.redact import redact_exception


def redacting(fn: Callable[..., Any], around: Callable[[], AbstractContextManager[Any]] = nullcontext
              ) -> Callable[..., Any]:
    """``fn``, called inside ``around()``, with any exception leaving it passed through
    :func:`~ftprep.redact.redact_exception`.

    To Prefect the wrapper is ``fn``: its name, signature, type hints and source (parameters, the UI's run form,
    cache keys from the task's source and code).
    """
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(f"{fn.__qualname__}: ftprep's tasks and flows are plain functions")
    clean_of, context = redact_exception, around  # closure variables: the wrapper below runs with fn's globals

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            with context():
                return fn(*args, **kwargs)
        except Exception as exc:
            clean = clean_of(exc)
            if clean is exc:
                raise
        raise clean  # outside the handler, so the original (secret and all) is not chained to it as its context

    # with fn's globals, as Prefect resolves a flow's parameter annotations in the function's __globals__
    run = types.FunctionType(run.__code__, fn.__globals__, fn.__name__, None, run.__closure__)
    functools.update_wrapper(run, fn)
    run.__prefect_task_source__ = fn  # type: ignore[attr-defined] # Prefect's task key and input hash: fn's code
    return run


def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """``prefect.task`` (same options), for a function whose exceptions are redacted as they leave it."""
    if fn is None:
        return lambda f: task(f, **options)
    return prefect.task(redacting(fn), **options)


def flow(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """``prefect.flow`` (same options), for a function whose exceptions are redacted as they leave it; its run
    sends ftprep's heartbeats when the command runs it (:mod:`ftprep.heartbeat`). Defining one installs ftprep's
    log filters (:func:`ftprep.logs.install`)."""
    if fn is None:
        return lambda f: flow(f, **options)
    # ftprep's log filters from the moment a flow exists: a worker's flow process checks the run's parameters (an
    # expected error, one line) before the flow body runs, where settings would install them
    logs.install()
    if "version" not in options:  # Prefect's default, a hash of the flow's file (not of this module)
        try:
            options["version"] = file_hash(inspect.getsourcefile(fn))
        except (TypeError, OSError):
            pass
    return prefect.flow(redacting(fn, around=beating), **options)
