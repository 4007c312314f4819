"""The record store: datasets read once per process, keyed by content, handed to the tasks that need records."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ftprep import storage
from ftprep.errors import InputError

Record = dict[str, Any]
Reader = Callable[[Path], Sequence[Record]]

_paused = [0, False]  # readers inside collector_paused(), and whether the collector was on before the first
_pause_lock = threading.Lock()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a dataset is read into memory, as it was before afterwards.

    Reading 400,000 items makes millions of objects that all live on; the collector's full passes over them are
    wasted (they hold no cycles) and took 0.75 s of a 1.67 s unpickle (bench: 0.93 s without). Memory is still
    freed by reference counting meanwhile; any cycles made are collected once the collector is back. Nested and
    concurrent reads keep it off until the last one ends."""
    with _pause_lock:
        if _paused[0] == 0:
            _paused[1] = gc.isenabled()
            gc.disable()
        _paused[0] += 1
    try:
        yield
    finally:
        with _pause_lock:
            _paused[0] -= 1
            if _paused[0] == 0 and _paused[1]:
                gc.enable()


def take(records: Sequence[Record], indices: Sequence[int]) -> Mapping[int, Record] | Sequence[Record]:
    """Something to index by the positions in ``indices``: a file-backed sequence reads them as one batch (in file
    order, whatever the order of ``indices``); a sequence in memory is returned as it is."""
    fetch = getattr(records, "take", None)
    return records if fetch is None else fetch(indices)


def project(records: Sequence[Record], names: Iterable[str]) -> Sequence[Record]:
    """The records with at least the fields ``names`` (a table reads only those columns); others as they are."""
    narrow = getattr(records, "project", None)
    return records if narrow is None else narrow(names)


_held: list[RecordStore] | None = None  # every store made since hold_until_exit(), when it was called


def hold_until_exit() -> None:
    """Keep every record store made from now on until the process leaves. Only for a process that leaves without
    teardown once its one command is done (the ``ftprep`` command, :func:`cli.main.run`): the end of its run
    then does not free the run's records one object at a time (0.25 s of a 400,000-item run). Never for a
    process that runs flow after flow."""
    global _held
    if _held is None:
        _held = []


class RecordStore:
    """Records by dataset sha256, read with ``reader`` at most once while they are kept.

    One store lives for one flow run (the flow makes it and hands it to its tasks as an argument that is left
    out of cache keys), so a long-lived worker does not keep every dataset it ever read. It keeps ``keep``
    datasets (the training data and a separate validation dataset); re-reading a 400k-item pickle costs
    seconds, so the tasks of one run share what the load task read. JSONL and Parquet datasets are kept as
    sequences that read on demand (``tasks/streamed.py``): what is kept is their line index or file metadata.
    """

    def __init__(self, reader: Reader, keep: int = 2):
        self._reader, self._keep = reader, keep
        self._records: dict[str, Sequence[Record]] = {}
        self._located: dict[str, str] = {}  # sha256 -> where this run has that content
        self._lock = threading.Lock()
        if _held is not None:
            _held.append(self)

    def __repr__(self) -> str:  # shown in Prefect's task inputs: never the data
        return f"RecordStore({len(self._records)} dataset(s))"

    def put(self, sha256: str, records: Sequence[Record]) -> Sequence[Record]:
        with self._lock:
            while len(self._records) >= self._keep:
                self._records.pop(next(iter(self._records)))
            self._records[sha256] = records
        return records

    def get(self, sha256: str) -> Sequence[Record] | None:
        return self._records.get(sha256)

    def locate(self, sha256: str, path: str | os.PathLike) -> None:
        """This run has content ``sha256`` at ``path``: read it from there, whatever path a reference names (a
        cached reference may name the file where another run, on another machine, read the same bytes)."""
        self._located[sha256] = os.fspath(path)

    def read(self, path: str | os.PathLike, sha256: str) -> Sequence[Record]:
        """The records of ``path`` whose content is ``sha256``: kept ones, or read now (from where
        :meth:`locate` said this run has them, if it did)."""
        found = self.get(sha256)
        if found is not None:
            return found
        path = self._located.get(sha256, path)
        try:
            same = storage.sha256(path) == sha256
        except (OSError, ValueError):
            same = False
        if not same:
            raise InputError(f"{path} changed or vanished since it was loaded; run again")
        return self.put(sha256, self._reader(path))
