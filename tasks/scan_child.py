"""Validation scans in a child process started with the command: the tokenizer loads there, on another core.

Loading tiktoken's encoding takes a third of a second of CPU, and the command's own process is busy importing
Prefect and the OpenAI SDK at the time (one core: the GIL). ``ftprep prepare`` and ``ftprep validate`` call
:func:`start` before anything else, so that a child ``python`` imports the scan code (no Prefect)
and loads the encoding beside that work; :func:`tasks.validate.validate_files` then hands it the local files to
scan (:func:`tasks.validation_scan.scan_files`, on every core: its worker processes are forked from it, small
and single-threaded, not from the command's process). Requests and answers are pickles on the child's
stdin and stdout, one at a time. Only this process's own code writes what it unpickles. The writer also sends it
notes, which have no answer: a large training file is being written, and how much of it is (:func:`ahead`); the
child checks its parts meanwhile (:mod:`tasks.scan_ahead`).

The child gets no credential (:func:`ftprep.children.environment`), ends with its parent (``PR_SET_PDEATHSIG``,
and its input closing), and draws its progress bar on the command's terminal. If it cannot start or goes away,
the scan runs in the calling process, as in a process that never started one (a worker, ``serve``, tests).
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ftprep import children, storage
from ftprep.errors import FtprepError

_HEADER = struct.Struct("!Q")
# what the tokenizer needs to find or fetch its encoding, and what the progress bar reads
_ENV = ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR", "FTPREP_PROGRESS", "TERM", "COLUMNS", "NO_COLOR",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "REQUESTS_CA_BUNDLE")
# the child's program: an interpreter that cannot import this module (not installed there) leaves quietly, and
# the scans run in the command's process; so does a child the interrupted command stops (SIGINT, its bar cleared)
_BOOT = """import os, sys
try:
    try:
        from tasks.scan_child import _serve
    except ImportError:
        raise SystemExit(3) from None
    _serve(sys.argv[1])
except KeyboardInterrupt:  # its progress bar is cleared by now; its workers end with it (parent-death signal)
    sys.stderr.flush()
    os._exit(130)  # not waiting at exit for the parts the workers are still checking
"""
INTERRUPT_SECONDS = 2.0  # an interrupted child's time to clear its progress bar and stop its workers
_lock = threading.Lock()
_current: Scanner | None = None
_plan: tuple[tuple[str, int, bool, bool], int] | None = None  # the validate step's scan: (settings, workers)


class ScanUnavailable(Exception):
    """The child cannot answer (it could not start, or it went away): scan in this process instead."""


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the validation process closed its output")
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the validation process closed its output")
    return pickle.loads(data)  # noqa: S301 - written by this module's own child, never by a data file


class Scanner:
    """The child process and the one conversation it holds at a time."""

    def __init__(self, encoding: str) -> None:
        self._lock = threading.Lock()
        self._reasons: dict[str, str | None] = {}  # encoding -> why counts are estimates (None: exact)
        self._first = encoding
        try:
            self._child: subprocess.Popen | None = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, encoding], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=children.environment(*_ENV), preexec_fn=children.preexec(helper=True),
                **children.HELPER_GROUP)  # Ctrl-C is the command's to handle; the child ends with it
        except OSError:
            self._child = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def alive(self) -> bool:
        return self._child is not None and self._child.poll() is None

    def _ask(self, message: Any | None) -> Any:
        """Send ``message`` (None: nothing), return the answer; ScanUnavailable, and the child given up, if
        there is none. The first answer is the child's first words: whether its encoding loaded."""
        child = self._child
        if child is None:
            raise ScanUnavailable("no validation process")
        try:
            if self._first is not None:
                first, self._first = self._first, None
                self._reasons[first] = _receive(child.stdout)
            if message is None:
                return None
            _send(child.stdin, message)
            return _receive(child.stdout)
        except BaseException as e:  # Ctrl-C midway, a child that went away or garbled: the conversation is over
            self.stop(interrupt=True)
            if isinstance(e, (OSError, EOFError, pickle.UnpicklingError)):
                raise ScanUnavailable(str(e)) from None
            raise

    def reason(self, encoding: str) -> str | None:
        """Why the child's token counts for ``encoding`` are estimates (None: exact, tiktoken loaded there)."""
        with self._lock:
            self._ask(None)
            if encoding not in self._reasons:
                self._reasons[encoding] = self._ask(("reason", encoding))
            return self._reasons[encoding]

    def scan(self, files: list[tuple[str, str]], encoding: str, limit: int, workers: int, exact_tokens: bool,
             raw_digest: bool) -> tuple[list[Any], str | None]:
        """(the scans of :func:`tasks.validation_scan.scan_files`, the estimate's reason), made in the child."""
        reason = self.reason(encoding)
        with self._lock:
            status, value = self._ask(("scan", files, encoding, limit, workers, exact_tokens, raw_digest))
        if status == "error":
            error, where = value
            if not isinstance(error, BaseException):
                error = RuntimeError(f"validation process: {error}")
            if not isinstance(error, FtprepError):  # a bug: where it happened, under the caller's traceback
                error.add_note(f"In the validation process:\n{where}")
            raise error
        return value, reason

    def tell(self, message: Any) -> bool:
        """Send a note that has no answer (the writer's, :func:`ahead`); False if the child cannot hear it."""
        with self._lock:
            child = self._child
            if child is None or child.stdin is None:
                return False
            try:
                _send(child.stdin, message)
            except (OSError, ValueError):  # gone: the scan finds out, and runs here
                return False
            return True

    def stop(self, interrupt: bool = False) -> None:
        """Close the child's input (it leaves) and forget it. ``interrupt``: the conversation broke off (Ctrl-C
        while the child works): it gets the Ctrl-C the terminal sent the command (its own process group got none), so
        that it clears its progress bar and shows the cursor again, as a scan in this process would, and stops."""
        child, self._child = self._child, None
        if child is not None:
            if interrupt and child.poll() is None:
                try:
                    child.send_signal(signal.SIGINT)
                    child.wait(INTERRUPT_SECONDS)
                except subprocess.TimeoutExpired:
                    child.kill()
                except (OSError, ValueError):  # gone meanwhile; no SIGINT to send (Windows)
                    pass
            children.close_pipes(child)


def start(encoding: str) -> Scanner:
    """Start this process's validation child (once) and let it load ``encoding``; returns it. Call it from the
    main thread: the child's parent-death signal follows the thread that started it."""
    from ftprep import tokens

    global _current
    with _lock:
        if _current is None or not _current.alive():
            _current = Scanner(encoding)
            tokens.counted_elsewhere(_reason)
        return _current


def stop() -> None:
    """Stop this process's validation child, if it started one: scans run here again."""
    from ftprep import tokens

    global _current
    with _lock:
        if _current is not None:
            _current.stop()
            _current = None
        tokens.counted_elsewhere(None)


def plan(settings: tuple[str, int, bool, bool], workers: int) -> None:
    """The scan the validate step will ask for: (encoding, per-example limit, exact_tokens, raw_digest), workers."""
    global _plan
    _plan = (settings, workers)


def ahead(path: Path | str, validation: Path | str | None, expected: int) -> Callable[[int, int], None] | None:
    """Tell the validation process that the training file ``path`` (``expected`` examples, opened just now) is
    being written, after the pair's ``validation`` file (written whole), if it can check its parts meanwhile
    (:mod:`tasks.scan_ahead`). Returns what the writer calls with the bytes it has written, in whole lines, and the
    file's modification time after them."""
    from tasks import scan_ahead

    scanner = current([(path, "")])
    if scanner is None or _plan is None or expected < scan_ahead.AHEAD_MIN_EXAMPLES or not scan_ahead.supported():
        return None
    settings, workers = _plan
    if not scanner.tell(("ahead", str(path), None if validation is None else str(validation), expected, settings,
                         workers)):
        return None

    def written(size: int, mtime_ns: int) -> None:
        scanner.tell(("written", str(path), size, mtime_ns))

    return written


def drop_ahead() -> None:
    """The file being written will not be validated (the write failed): its parts' checks stop."""
    scanner = current()
    if scanner is not None:
        scanner.tell(("drop",))


def _reason(encoding: str) -> str | None:
    """Why token counts for ``encoding`` are estimates, as the process that counts them says."""
    from ftprep.tokens import text_counter

    scanner = current()
    if scanner is not None:
        try:
            return scanner.reason(encoding)
        except ScanUnavailable:
            pass
    return text_counter(encoding)[1]


def current(files: list[tuple[Path | str, str]] | None = None) -> Scanner | None:
    """The running child, if this process started one and it can read ``files`` (local files only: an object
    store's client and credentials stay in this process)."""
    scanner = _current
    if scanner is None or not scanner.alive():
        return None
    if files is not None and any(storage.is_url(path) for path, _ in files):
        return None
    return scanner


# ------------------------------------------------------------------------------------------- the child
_deadline: list[threading.Timer] = []  # started by the first Ctrl-C


def _interrupted(signum, frame) -> None:
    """Ctrl-C passed on by the command: unwind (the progress bar cleared), and in any case be gone within a second,
    whatever the unwinding meets (a lock a killed worker held). Not inside a fork's at-fork hooks or a C
    extension's start (see :func:`ftprep.children.interrupt_again_if_unsafe`): the Ctrl-C comes again 10 ms later."""
    if not _deadline:  # the first Ctrl-C, not one sent again
        _deadline.append(threading.Timer(1.0, os._exit, (130,)))
        _deadline[0].daemon = True
        _deadline[0].start()
    if children.interrupt_again_if_unsafe(frame):
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _serve(encoding: str) -> None:
    out = os.fdopen(os.dup(1), "wb")  # the answers; anything printed goes to stderr, not into them
    os.dup2(2, 1)
    children.track_forks()  # after the imports: it spans every other at-fork hook
    signal.signal(signal.SIGINT, _interrupted)
    children.resend_lost_interrupts(_interrupted)
    try:
        _answer(out, encoding)
    except BrokenPipeError:  # the command closed its end (it stopped listening, or it went away): nobody to tell
        os._exit(0)  # not even the answer still buffered, which would fail again on the way out, with a traceback


def _answer(out: IO[bytes], encoding: str) -> None:
    """Say whether ``encoding`` loaded, then answer each request on stdin until it closes."""
    from ftprep.tokens import text_counter
    from tasks.validation_scan import scan_files

    _send(out, text_counter(encoding)[1])
    requests = sys.stdin.buffer
    ahead = None  # the training file being written, checked meanwhile
    try:
        while True:
            try:
                message = _receive(requests)
            except EOFError:
                return
            kind, *args = message
            if kind == "reason":
                _send(out, text_counter(args[0])[1])
                continue
            if kind in ("ahead", "written", "drop"):
                ahead = _note(ahead, kind, args)
                continue
            try:
                answer: Any = ("ok", scan_files([(p, r) for p, r in args[0]], *args[1:], ahead=ahead))
            except Exception as e:  # noqa: BLE001 - handed to the caller, which raises it
                answer = ("error", (e, traceback.format_exc()))
            finally:
                if ahead is not None:  # taken over by the scan, or not this scan's file: done with either way
                    ahead.close()
                    ahead = None
            try:
                _send(out, answer)
            except (pickle.PicklingError, TypeError, AttributeError):  # an exception that does not pickle
                error, where = answer[1]
                _send(out, ("error", (f"{type(error).__name__}: {error}", where)))
    finally:  # the command is done or gone: so is any work ahead
        if ahead is not None:
            ahead.close()


def _note(ahead: Any, kind: str, args: list[Any]) -> Any:
    """A note from the writer (no answer): a training file opened ("ahead"), more of it written ("written"), or
    given up ("drop"); returns the work ahead, if any. Best effort: anything that goes wrong drops it, and the scan
    reads the whole file."""
    from tasks.scan_ahead import Ahead

    try:
        if kind == "written":
            if ahead is not None and args[0] == ahead.path:  # another file's notes: not this work's
                ahead.more(*args[1:])
            return ahead
        if ahead is not None:
            ahead.close()
        return Ahead(*args) if kind == "ahead" else None
    except Exception:  # noqa: BLE001 - the scan does it all instead
        if ahead is not None:
            ahead.close()
        return None


if __name__ == "__main__":
    _serve(sys.argv[1])
