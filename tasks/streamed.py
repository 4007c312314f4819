"""Streamed datasets: JSONL and Parquet records read on demand, so memory stays flat as the file grows.

:class:`JsonlRecords` checks every line once (it parses, it is an object) and keeps only the start offset of each
record's line (an int64 array, 8 bytes a record); records are read and parsed again when asked for: in order
for iteration, a batch of positions in file order (:meth:`JsonlRecords.take`; neighbouring records in one read),
one position by seek. :class:`ParquetRecords` keeps the file's metadata; records come a row group at a time,
of only the columns asked for (:meth:`ParquetRecords.project`). A URL (``s3://``…) is read in ranges like a
local file; a JSONL URL wanted out of order (a shuffled split) is first copied to a local temporary file
(disk, not memory), so that random access never costs a request per record.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import shutil
import threading
import weakref
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any

import orjson

from ftprep import storage
from ftprep.errors import InputError
from ftprep.fsio import CHUNK, owned_temp
from ftprep.records import Record

PYTHON_ROWS = 2048  # Parquet rows turned into Python objects at a time


# ------------------------------------------------------------------------------------------ one line
def _lenient_json(line: bytes, where: str) -> Any:
    """Python's json (NaN/Infinity, as Python writes them) for a line orjson refused; None if not JSON either."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    except RecursionError:  # orjson stops at 1024 levels; Python's json recurses until it cannot
        raise InputError(f"{where} nests JSON arrays or objects too deeply; flatten or remove that line") from None
    try:
        orjson.dumps(obj)  # what json accepts and orjson cannot write back: a lone surrogate, or a huge integer
    except orjson.JSONEncodeError as e:
        if "surrogate" not in str(e):
            return obj  # an integer beyond 64 bits: the template's numeric check names it
        raise InputError(f"{where} holds text that is not valid Unicode (a lone surrogate such as \\ud800); fix "
                         "or remove that line") from None
    return obj


def parse_line(line: bytes, path: Any, lineno: int | str) -> Record:
    """One JSONL line as a dict record, or an :class:`InputError` naming ``path:lineno``."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        if "depth limit" in str(e) or "recursion" in str(e):  # the same limit on every Python version
            raise InputError(f"{path}:{lineno} nests JSON arrays or objects too deeply (more than 1,024 "
                             "levels); flatten or remove that line") from None
        obj = _lenient_json(line, f"{path}:{lineno}")  # NaN/Infinity: checked later, by the template
        if obj is None:
            what = "not UTF-8" if "utf-8" in str(e).lower() else "not valid JSON"
            raise InputError(f"{path}:{lineno} is {what}; fix or remove that line") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}:{lineno} is a JSON {type(obj).__name__}, not an object")
    return obj


# ------------------------------------------------------------------------------------------- source
class _Source:
    """Where a dataset's bytes are: a local file, or a URL read in ranges; both checked unchanged on each open.

    A URL is copied to a local temporary file (disk, not memory; removed with its owner) only when records are
    wanted out of order (a shuffled split), where a range request per record would crawl.
    """

    def __init__(self, path: str | os.PathLike):
        self.shown = str(path)
        self.path = str(path) if storage.is_url(path) else os.fspath(path)
        self.stamp = self._stamp(None)

    @property
    def local(self) -> bool:
        return not storage.is_url(self.path)

    def _stamp(self, f: Any) -> tuple:
        if not self.local:
            found = storage.info(self.path)
            return found["size"], found.get("etag"), found.get("mtime_ns")
        st = os.fstat(f.fileno()) if f is not None else os.stat(self.path)
        return st.st_size, st.st_mtime_ns, st.st_ino

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        with storage.open_read(self.path) as f:
            if self._stamp(f) != self.stamp:
                raise InputError(f"{self.shown} changed since it was loaded; run again")
            yield f

    def copy_to_disk(self, owner: object) -> None:
        if self.local:
            return
        # held (locked) while this process has it: a run killed meanwhile leaves it to the next run to remove
        fd, tmp = owned_temp("ftprep-dataset-", storage.suffix(self.path))
        weakref.finalize(owner, _remove, tmp, fd)
        with os.fdopen(os.dup(fd), "wb") as out, self.open() as src:
            shutil.copyfileobj(src, out, CHUNK)
        self.path = tmp
        self.stamp = self._stamp(None)


def _remove(path: str, fd: int) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass


class _Opened:
    def __init__(self, file: IO[bytes], context: Any):
        self.file, self.context = file, context

    def close(self) -> None:
        self.context.__exit__(None, None, None)


def _close(handle: list) -> None:
    if handle and handle[0] is not None:
        handle[0].close()


# --------------------------------------------------------------------------------------------- JSONL
class JsonlRecords(Sequence):
    """The records of a JSONL file, one per non-blank line, parsed when asked for (see the module)."""

    def __init__(self, path: str | os.PathLike):
        self._file = _Source(path)
        self._offsets = array("q")
        self._lock = threading.Lock()
        self._handle: list = [None]  # (file, its context) for random access, opened on first use
        weakref.finalize(self, _close, self._handle)
        with self._file.open() as f:
            position = 0
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    parse_line(line, self._file.shown, lineno)  # checked once, for one clear error now
                    self._offsets.append(position)
                position += len(line)
        self._offsets.append(position)  # the end: record i's line is offsets[i]..offsets[i + 1] (and blanks)

    @property
    def index_bytes(self) -> int:
        """Memory the index keeps: 8 bytes per record."""
        return self._offsets.itemsize * len(self._offsets)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __repr__(self) -> str:
        return f"JsonlRecords({self._file.shown!r}, {len(self):,} records)"

    def _read(self, start: int, end: int) -> bytes:
        with self._lock:
            if self._handle[0] is None:
                context = self._file.open()
                self._handle[0] = _Opened(context.__enter__(), context)
            f = self._handle[0].file
            f.seek(start)
            return f.read(end - start)

    def _parse(self, line: bytes, i: int) -> Record:
        return parse_line(line, self._file.shown, f"record {i}")

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            indices = range(*i.indices(len(self)))
            found = self.take(indices)
            return [found[j] for j in indices]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        i %= n
        return self._parse(self._read(self._offsets[i], self._offsets[i + 1]), i)

    def take(self, indices: Iterable[int]) -> dict[int, Record]:
        """The records at ``indices`` (a batch, any order), read in file order: {position: record}.

        Runs of neighbouring records are read with one read each (a batch of an unshuffled split is one run).
        """
        wanted = sorted(set(indices))
        if not wanted:
            return {}
        if not (0 <= wanted[0] and wanted[-1] < len(self)):
            raise IndexError(wanted[0] if wanted[0] < 0 else wanted[-1])
        if not self._file.local and wanted[-1] - wanted[0] + 1 > 2 * len(wanted):
            with self._lock:  # out of order from a URL: read from a local copy from now on
                _close(self._handle)
                self._handle[0] = None
                self._file.copy_to_disk(self)
        found, run = {}, [wanted[0]]
        for i in wanted[1:] + [None]:
            if i is not None and i - run[-1] <= 4:  # near enough: read the few records between too
                run.append(i)
                continue
            base = self._offsets[run[0]]
            data = self._read(base, self._offsets[run[-1] + 1])
            for j in run:
                found[j] = self._parse(data[self._offsets[j] - base : self._offsets[j + 1] - base], j)
            if i is not None:
                run = [i]
        return found

    def __iter__(self) -> Iterator[Record]:
        with self._file.open() as f:
            i = 0
            for line in f:
                if line.strip():
                    yield self._parse(line, i)
                    i += 1


def read_jsonl(path: str | os.PathLike) -> JsonlRecords:
    return JsonlRecords(path)


# ------------------------------------------------------------------------------------------- Parquet
def _python(table: Any) -> dict[str, list[Any]]:
    """Columns of an Arrow table as Python lists; NaN becomes None (an empty cell), as JSON and pickles say."""
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        values = column.to_pylist()
        columns[name] = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    return columns


class ParquetRecords(Sequence):
    """The rows of a Parquet file as dicts of ``columns`` (all unless projected), a row group at a time.

    In-order access keeps one row group in Arrow form and :data:`PYTHON_ROWS` rows as Python objects; a batch in
    any other order (:meth:`take`, a shuffled split) reads the projected columns whole, in Arrow form (about
    their uncompressed size; a projection to the template's fields keeps that small), and converts only the batch.
    """

    def __init__(self, path: str | os.PathLike, *, _base: ParquetRecords | None = None,
                 columns: Sequence[str] | None = None):
        if _base is not None:
            self._base = _base  # keeps the base's open file while this view lives
            self._file, self._pf, self._starts, self._n = _base._file, _base._pf, _base._starts, _base._n
            self._lock = _base._lock
            self.columns = tuple(c for c in _base.columns if c in set(columns or ()))
        else:
            import pyarrow.parquet as pq

            self._file = _Source(path)
            self._lock = threading.Lock()
            handle: list = [None]
            weakref.finalize(self, _close, handle)
            try:
                if self._file.local:
                    self._pf = pq.ParquetFile(self._file.path)
                else:  # a seekable stream: pyarrow reads the footer, then the row groups it needs, in ranges
                    context = self._file.open()
                    handle[0] = _Opened(context.__enter__(), context)
                    self._pf = pq.ParquetFile(handle[0].file)
                for _ in self._pf.iter_batches(batch_size=65_536):  # every page decodes: a bad file fails now
                    pass
            except Exception as e:  # pyarrow raises several unrelated types for a bad file
                raise InputError(f"{path} is not a readable Parquet file ({type(e).__name__}); re-export it") from None
            meta = self._pf.metadata
            self._starts = [0]
            for k in range(meta.num_row_groups):
                self._starts.append(self._starts[-1] + meta.row_group(k).num_rows)
            self._n = meta.num_rows
            self.columns = tuple(self._pf.schema_arrow.names)
        self._group: tuple[int, Any] | None = None  # (row group, Arrow table)
        self._rows: tuple[int, dict[str, list[Any]]] | None = None  # (first row, Python columns)
        self._whole: Any = None

    def project(self, names: Iterable[str]) -> ParquetRecords:
        """The same rows with only the columns in ``names`` (those the file has) read."""
        return ParquetRecords("", _base=self, columns=tuple(names))

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"ParquetRecords({self._file.shown!r}, {self._n:,} rows, {len(self.columns)} columns)"

    def _row(self, i: int) -> Record:
        rows = self._rows
        if rows is None or not rows[0] <= i < rows[0] + len(rows[1][self.columns[0]] if self.columns else ()):
            k = bisect.bisect_right(self._starts, i) - 1
            with self._lock:
                if self._group is None or self._group[0] != k:
                    self._group = (k, self._pf.read_row_group(k, columns=list(self.columns)))
                group = self._group[1]
            first = i - (i - self._starts[k]) % PYTHON_ROWS
            local = first - self._starts[k]
            rows = self._rows = (first, _python(group.slice(local, PYTHON_ROWS)))
        j = i - rows[0]
        return {name: rows[1][name][j] for name in self.columns}

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self._row(j) for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._row(i % self._n)

    def take(self, indices: Sequence[int]) -> Mapping[int, Record] | ParquetRecords:
        """The records at ``indices``: read in order (this sequence) or, for a batch out of order, from the
        projected columns held whole in Arrow form."""
        indices = list(indices)
        if all(a < b for a, b in zip(indices, indices[1:], strict=False)):
            return self
        with self._lock:
            if self._whole is None:
                self._whole = self._pf.read(columns=list(self.columns))
            whole = self._whole
        import pyarrow as pa

        wanted = sorted(set(indices))
        columns = _python(whole.take(pa.array(wanted, type=pa.int64())))
        return {i: {name: columns[name][j] for name in self.columns} for j, i in enumerate(wanted)}

    def __iter__(self) -> Iterator[Record]:
        for i in range(self._n):
            yield self._row(i)


def read_parquet(path: str | os.PathLike) -> ParquetRecords:
    return ParquetRecords(path)
