"""Load: read a dataset file into records, safely, and describe it by content.

Pure part: :func:`read_records` reads pickles (without importing or running anything the pickle names) and
CSV into a sequence of ``dict`` records in memory, and JSONL and Parquet into sequences that read records on
demand (:mod:`tasks.streamed`). Task part: :func:`load_dataset` hashes the
file, reads it once into the run's :class:`~ftprep.records.RecordStore` and returns a small
:class:`DatasetRef`; later tasks get the records back through :func:`records_for` and the same store.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import os
import pickle
import struct
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ftprep import storage
from ftprep.caching import content_cache
from ftprep.errors import InputError, UnsafePickleError
from ftprep.models import DatasetRef
from ftprep.pause import pause_point
from ftprep.records import Record, RecordStore, collector_paused, take
from ftprep.steps import task
from tasks import PIPELINE_MODULES
from tasks.streamed import read_jsonl, read_parquet

FORMATS = {
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}



# --------------------------------------------------------------------------------------------- pickle
class _Placeholder:
    """Stands in for a class the pickle names; its instances are rebuilt as attribute records.

    No ``__setstate__``: the C unpickler then puts the state into the instance's ``__dict__`` itself (a dict, or
    a (dict, slot dict) pair), without a Python call per object; :func:`_plain` makes the record."""

    __slots__ = ("__dict__",)


class _PlaceholderMeta(type):
    def __call__(cls, *args, **kwargs):  # REDUCE/INST: the pickle wants to *call* what it named
        raise UnsafePickleError(f"pickle tries to call {cls.__module__}.{cls.__qualname__}")

    def __setstate__(cls, state: Any) -> None:  # BUILD on the class itself (its instances do not see this)
        raise UnsafePickleError(f"pickle tries to set state on {cls.__module__}.{cls.__qualname__}")


def _reconstructor(cls, base, state):  # copyreg._reconstructor, without calling anything foreign
    if not (isinstance(cls, _PlaceholderMeta) and base is object and state is None):
        raise UnsafePickleError("pickle uses copyreg._reconstructor with a base other than object")
    return cls.__new__(cls)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:  # how protocol 2 pickles bytes
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"pickle asks for _codecs.encode with {encoding!r}")
    return text.encode("latin1")


class _NumpyDtype:
    def __init__(self, name: str, *_: Any) -> None:
        self.name = name

    def __setstate__(self, state: Any) -> None:
        self.byteorder = state[1] if isinstance(state, tuple) and len(state) > 1 else "<"


_NUMPY_SCALARS = {"f8": "d", "f4": "f", "i8": "q", "i4": "i", "i2": "h", "i1": "b", "u8": "Q", "u4": "I",
                  "u2": "H", "u1": "B", "b1": "?"}


def _numpy_scalar(dtype: _NumpyDtype, data: bytes) -> Any:
    code = _NUMPY_SCALARS.get(dtype.name)
    if code is None or not isinstance(data, bytes):
        raise UnsafePickleError(f"pickle holds a numpy scalar of dtype {dtype.name!r}, which is not supported")
    order = ">" if getattr(dtype, "byteorder", "<") == ">" else "<"
    return struct.unpack(order + code, data)[0]


def _bytearray(source: Any = b"", *args: Any, limit: int) -> bytearray:
    # bytearray(n) is n zero bytes: a 20-byte pickle could ask for terabytes. Python never pickles a bytearray
    # that way (its content is in the file), so a size beyond the file itself is refused.
    if isinstance(source, int) and not 0 <= source <= limit:
        raise UnsafePickleError(f"pickle asks for a bytearray of {source:,} bytes, more than the file holds")
    return bytearray(source, *args)


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "complex"): complex,
    ("builtins", "object"): object,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "dtype"): _NumpyDtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}
_SAFE_MODULE_TYPES = {"datetime": {"datetime", "date", "time", "timedelta", "timezone"},
                      "decimal": {"Decimal"}, "collections": {"OrderedDict"}}


class _Allowed:
    """What the unpickler hands out for an allowed global: it can be called, nothing else.

    BUILD (the pickle's state-setting opcode) calls ``__setstate__`` when an object has one; here it refuses,
    so a data file cannot set ``__defaults__`` or attributes on ftprep's own functions and classes (which
    would last for the rest of a long-lived process, ``ftprep serve`` or a worker).
    """

    __slots__ = ("_target", "_name")

    def __init__(self, target: Any, name: str):
        self._target, self._name = target, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args = tuple(a._target if isinstance(a, _Allowed) else a for a in args)  # copyreg._reconstructor's object
        return self._target(*args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(f"pickle tries to set state on {self._name}")

    def __repr__(self) -> str:
        return self._name


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedReader, size: int):
        super().__init__(file)
        self._placeholders: dict[tuple[str, str], type] = {}
        self._size = size

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names in protocol 0-2 pickles (what the standard find_class maps for fix_imports)
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _SAFE_GLOBALS:
            target = _SAFE_GLOBALS[(module, name)]
            if target is _bytearray:
                target = partial(_bytearray, limit=self._size)
            return _Allowed(target, f"{module}.{name}")
        if name in _SAFE_MODULE_TYPES.get(module, ()):  # stdlib value types: constructing them runs nothing
            return _Allowed(super().find_class(module, name), f"{module}.{name}")
        key = (module, name)
        if key not in self._placeholders:
            cls = _PlaceholderMeta(name, (_Placeholder,), {"__module__": module, "__qualname__": name})
            self._placeholders[key] = cls
        return self._placeholders[key]

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("pickle uses persistent ids, which are not supported")


def _plain(value: Any) -> Any:
    if isinstance(value, _Placeholder):
        state = vars(value)
        if "__dict__" in state and "__pydantic_fields_set__" in state:  # pydantic v2
            return dict(state["__dict__"] or {}, **(state.get("__pydantic_extra__") or {}))
        return state
    return value


def read_pickle(path: Path | str) -> list[Record]:
    with storage.open_read(path) as f:
        try:
            data = _SafeUnpickler(f, storage.size(path)).load()
        except UnsafePickleError as e:
            raise UnsafePickleError(f"{path}: refused: {e}; nothing was run") from None
        except MemoryError:  # a length field far beyond the file (BINBYTES8, BYTEARRAY8, FRAME)
            raise InputError(f"{path} is not a readable pickle (it declares an object larger than memory); "
                             "check the file is complete or re-save it") from None
        except pickle.UnpicklingError as e:
            if "state is not a dictionary" in str(e):  # an object's state the unpickler cannot set as attributes
                raise InputError(f"{path} holds an object whose state is not a dict of attributes; save the items "
                                 "as plain dicts or as JSONL/Parquet instead") from None
            raise InputError(f"{path} is not a readable pickle (UnpicklingError: {str(e)[:200]}); check the file "
                             "is complete or re-save it") from None
        except (EOFError, ValueError, TypeError, struct.error, IndexError,
                KeyError, AttributeError, ArithmeticError, RecursionError) as e:
            raise InputError(
                f"{path} is not a readable pickle ({type(e).__name__}: {str(e)[:200]}); check the file is "
                "complete or re-save it"
            ) from None
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()) and data:
        raise InputError(f"{path} holds a dict of lists ({', '.join(map(str, data))}); save one list of items")
    if not isinstance(data, (list, tuple)):
        raise InputError(
            f"{path} holds a {type(data).__qualname__}, not a list of items; pickle a list of items or dicts"
        )
    records = []
    for i, item in enumerate(data):
        item = _plain(item)
        if not isinstance(item, dict):
            raise InputError(f"{path}: item {i} is a {type(item).__name__}, not an object or dict")
        records.append(item)
    return records


# -------------------------------------------------------------------------------------- other formats
class ColumnRecords(Sequence):
    """Rows of a table as dicts, made on access (a list of dicts would double the memory)."""

    def __init__(self, columns: dict[str, list[Any]]):
        self._columns = columns
        self._names = tuple(columns)
        self._n = len(next(iter(columns.values()))) if columns else 0

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        return {name: self._columns[name][i] for name in self._names}


def _frame_records(df) -> ColumnRecords:
    columns = {}
    for name in df.columns:
        values = df[name].tolist()
        # pandas gives NaN for empty cells; records say None, as JSON and pickles do
        columns[str(name)] = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    return ColumnRecords(columns)


def read_csv(path: Path | str) -> ColumnRecords:
    import pandas as pd

    try:
        with storage.open_read(path) as f:
            df = pd.read_csv(f, encoding="utf-8", keep_default_na=False, na_values=[""])
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text (byte {e.start}); re-save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty; give a CSV with a header row and records") from None
    except pd.errors.ParserError as e:
        raise InputError(f"{path} is not valid CSV ({str(e).splitlines()[0]}); fix the file") from None
    return _frame_records(df)


_READERS = {"pickle": read_pickle, "csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}


def detect_format(path: Path | str) -> str:
    suffix = storage.suffix(path)
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: unknown file type {suffix or '(none)'!r}; use one of {', '.join(sorted(FORMATS))}"
        )
    return fmt


def check_readable(path: Path | str, option: str = "") -> None:
    path = storage.normalize(path, option) if storage.is_url(path) or str(path).startswith("file://") else path
    problem = storage.problem(path, option)  # never opens a FIFO (that would block)
    if problem == "does not exist":
        raise InputError(f"{path} does not exist; check the {'URL' if storage.is_url(path) else 'path'}"
                         f"{' given to ' + option if option else ''}")
    if problem is not None:
        readable = "" if problem == "is a directory" else " you can read"
        raise InputError(f"{path} {problem}; give a dataset file (.pkl, .csv, .jsonl or .parquet){readable}"
                         f"{' to ' + option if option else ''}")
    if storage.size(path) == 0:
        raise InputError(f"{path} is empty; give a dataset file with records{' to ' + option if option else ''}")


def read_records(path: str | os.PathLike) -> Sequence[Record]:
    """Read any supported dataset file (a path or a URL) into a sequence of dict records."""
    path = storage.normalize(path)
    check_readable(path)
    with collector_paused():
        records = _READERS[detect_format(path)](path)
    if len(records) == 0:
        raise InputError(f"{path} holds no records; give a dataset with at least one item")
    return records


def field_names(records: Sequence[Record], sample: int = 1000) -> tuple[str, ...]:
    columns = getattr(records, "columns", None)  # a table's fields are its columns
    if columns is not None:
        return tuple(columns)
    names: dict[str, None] = {}
    step = max(1, len(records) // sample)
    positions = range(0, len(records), step)
    batch = take(records, positions)
    for i in positions:
        names.update(dict.fromkeys(batch[i]))
    return tuple(names)


# ------------------------------------------------------------------------------------ describe, store
def new_store() -> RecordStore:
    """A record store that reads with :func:`read_records` (one per flow run)."""
    return RecordStore(read_records)


def describe(path: str | os.PathLike, store: RecordStore | None = None) -> tuple[DatasetRef, Sequence[Record]]:
    """Hash and read ``path``; keep its records in ``store`` (when given) for the later tasks of the run."""
    path = storage.normalize(path)
    check_readable(path)
    fmt = detect_format(path)
    with storage.store_errors(path):
        digest = storage.sha256(path)  # streamed; remembered, so the cache key's hashing is not repeated
    records = store.get(digest) if store is not None else None
    if records is None:
        records = read_records(path)
        if store is not None:
            store.put(digest, records)
    ref = DatasetRef(path=str(path), sha256=digest, format=fmt, size_bytes=storage.size(path),
                     records=len(records), fields=field_names(records))
    return ref, records


def read_here(ref: DatasetRef, path: str, store: RecordStore) -> DatasetRef:
    """``ref`` (possibly a cached one, naming where another run read the same bytes) as this run's: its records
    are read from ``path``, and the reference names it."""
    store.locate(ref.sha256, path)
    return ref if ref.path == path else ref.model_copy(update={"path": path})


def records_for(ref: DatasetRef, store: RecordStore) -> Sequence[Record]:
    """The records of a dataset described earlier in this run (read again if the store no longer has them)."""
    return store.read(ref.path, ref.sha256)


# ----------------------------------------------------------------------------------------------- task
@task(
    name="load",
    # the file counts by its content: the same bytes at another path, or on another machine, are a cache hit
    cache_policy=content_cache(PIPELINE_MODULES, files=("path",)),
    persist_result=True,
)
def load_dataset(path: str, store: RecordStore) -> DatasetRef:
    """Read the dataset once (into the run's record store) and return a reference: path, sha256, count, fields."""
    from prefect import get_run_logger

    pause_point("load")
    ref, _ = describe(path, store)
    get_run_logger().info(
        "Loaded %s records (%s, %.1f MB, sha256 %s) from %s; fields: %s",
        f"{ref.records:,}", ref.format, ref.size_bytes / 1e6, ref.sha256[:12], ref.path, ", ".join(ref.fields),
    )
    return ref
