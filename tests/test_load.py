"""Loading datasets: real course pickles without importing their classes, and the tabular formats."""

from __future__ import annotations

import math
import os
import pickle
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from ftprep.errors import InputError, UnsafePickleError
from tasks.load import describe, field_names, read_records

SHARED = Path(__file__).resolve().parents[2] / "shared"
SIMPLEITEM = SHARED / "real-data" / "course-pickles" / "simpleitem_test.pkl"


def _pickle_as(module: str, cls: type, objects: list, protocol: int) -> bytes:
    """Pickle instances of ``cls`` as if it lived in ``module`` (which is gone again afterwards)."""
    fake = types.ModuleType(module)
    setattr(fake, cls.__name__, cls)
    cls.__module__, cls.__qualname__ = module, cls.__name__
    sys.modules[module] = fake
    try:
        return pickle.dumps(objects, protocol=protocol)
    finally:
        del sys.modules[module]


@pytest.mark.skipif(not SIMPLEITEM.exists(), reason="../shared/real-data is not present")
def test_real_simpleitem_pickle_loads_without_its_class():
    assert not hasattr(sys.modules["__main__"], "SimpleItem")  # the class exists nowhere here
    records = read_records(SIMPLEITEM)
    assert len(records) == 50
    assert set(records[0]) == {"title", "description", "price", "category", "token_count"}
    assert records[0]["title"].startswith("MyCableMart 3.5mm Plug/Jack")
    assert records[0]["price"] == 25.0
    assert all(isinstance(r["price"], float) for r in records)


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_items_item_objects_any_protocol(tmp_path, protocol):
    class Item:
        def __init__(self, title, price):
            self.title, self.price = title, price

    data = _pickle_as("items", Item, [Item("Fuel pump", 12.5), Item("Knob ½\"", 3.0)], protocol)
    path = tmp_path / "items.pkl"
    path.write_bytes(data)
    assert "items" not in sys.modules
    assert list(read_records(path)) == [{"title": "Fuel pump", "price": 12.5}, {"title": 'Knob ½"', "price": 3.0}]


def test_pydantic_item_pickle(tmp_path):
    from pydantic import BaseModel

    class Item(BaseModel):
        title: str
        price: float
        summary: str | None = None

    data = _pickle_as("course_models", Item, [Item(title="A", price=1.5, summary="s")], 4)
    path = tmp_path / "p.pkl"
    path.write_bytes(data)
    assert list(read_records(path)) == [{"title": "A", "price": 1.5, "summary": "s"}]


@pytest.mark.parametrize("protocol", [2, 4, 5])  # 0 and 1 cannot pickle slots
def test_slotted_items_and_their_state_forms(tmp_path, protocol):
    class Slotted:
        __slots__ = ("title", "price")

        def __init__(self, title, price):
            self.title, self.price = title, price

    class Mixed:  # (dict, slot dict) state
        __slots__ = ("__dict__", "price")

        def __init__(self, title, price):
            self.title, self.price = title, price

    for cls in (Slotted, Mixed):
        path = tmp_path / f"{cls.__name__}-{protocol}.pkl"
        path.write_bytes(_pickle_as("items", cls, [cls("Fuel pump", 12.5)], protocol))
        assert list(read_records(path)) == [{"title": "Fuel pump", "price": 12.5}]


def test_an_object_whose_state_is_not_attributes_is_one_clear_line(tmp_path):
    class Odd:
        def __getstate__(self):
            return ["not", "a", "dict"]

    path = tmp_path / "odd.pkl"
    path.write_bytes(_pickle_as("items", Odd, [Odd()], 4))
    with pytest.raises(InputError, match="holds an object whose state is not a dict of attributes; save the items as "
                                         "plain dicts"):
        read_records(path)


def test_a_pickle_cannot_set_state_on_a_class_it_names(tmp_path):
    path = tmp_path / "build-class.pkl"
    path.write_bytes(_set_state("items", "Item", _DICT_ATTR))
    with pytest.raises(UnsafePickleError, match=r"refused: pickle tries to set state on items\.Item; nothing was run"):
        read_records(path)


def test_plain_dict_pickle_and_numpy_prices(tmp_path):
    import numpy as np

    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps([{"title": "x", "price": np.float64(9.99), "n": np.int64(3)}]))
    (rec,) = read_records(path)
    assert rec == {"title": "x", "price": 9.99, "n": 3} and type(rec["price"]) is float


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([_Evil(marker)]))
    with pytest.raises(UnsafePickleError, match=r"refused: pickle tries to call (posix|os)\.system"):
        read_records(path)
    assert not marker.exists()


def test_malicious_pickle_via_builtins_eval(tmp_path):
    class EvalItem:
        def __reduce__(self):
            return (eval, ("__import__('os').getcwd()",))

    path = tmp_path / "evil2.pkl"
    path.write_bytes(pickle.dumps(EvalItem()))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        read_records(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x80\x04\x95", "not a readable pickle"),
        (pickle.dumps([{"a": 1}] * 50)[:-30], "not a readable pickle"),
        (pickle.dumps({"a": 1}), "holds a dict, not a list of items"),
        (pickle.dumps([1, 2]), "item 0 is a int"),
    ],
)
def test_bad_pickles(tmp_path, content, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_records(path)


def test_csv_jsonl_parquet_agree(tmp_path):
    df = pd.DataFrame({"title": ["a", "b é"], "price": [1.5, 20.0], "note": ["x", None]})
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_json(tmp_path / "d.jsonl", orient="records", lines=True, force_ascii=False)
    df.to_parquet(tmp_path / "d.parquet")
    expected = [{"title": "a", "price": 1.5, "note": "x"}, {"title": "b é", "price": 20.0, "note": None}]
    for name in ("d.csv", "d.jsonl", "d.parquet"):
        records = read_records(tmp_path / name)
        assert [records[i] for i in range(len(records))] == expected, name
        assert field_names(records) == ("title", "price", "note")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.csv", None, "does not exist"),
        ("empty.jsonl", b"", "is empty"),
        ("data.xlsx", b"x", "unknown file type '.xlsx'"),
        ("latin1.csv", "title,price\ncaf\xe9,1\n".encode("latin-1"), "not UTF-8"),
        ("broken.jsonl", b'{"a": 1}\n{"a": \n', r"broken.jsonl:2 is not valid JSON"),
        ("list.jsonl", b"[1, 2]\n", "is a JSON list, not an object"),
        ("blank.jsonl", b"\n\n", "holds no records"),
    ],
)
def test_bad_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_records(path)


def test_directory_is_refused(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        read_records(tmp_path)


def test_describe_identifies_by_content(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"x": 1}\n{"x": 2}\n')
    b.write_text('{"x": 1}\n{"x": 2}\n')
    ref_a, _ = describe(a)
    ref_b, _ = describe(b)
    assert ref_a.sha256 == ref_b.sha256 and ref_a.records == 2 and ref_a.fields == ("x",)
    b.write_text('{"x": 1}\n')
    assert describe(b)[0].sha256 != ref_a.sha256


# ------------------------------------------------------------------------- no input can crash or change a run
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_the_value_types_a_pickle_may_hold_still_load(tmp_path, protocol):
    import collections
    import datetime as dt
    from decimal import Decimal

    import numpy as np

    item = {"when": dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))), "day": dt.date(2024, 1, 2),
            "price": Decimal("12.50"), "tags": {"a"}, "frozen": frozenset({"b"}), "raw": bytearray(b"\x00\xff"),
            "z": complex(1, 2), "od": collections.OrderedDict(a=1), "f32": np.float32(2.5), "i8": np.int8(-3)}
    path = tmp_path / "types.pkl"
    path.write_bytes(pickle.dumps([item], protocol=protocol))
    (rec,) = read_records(path)
    assert rec == {**item, "f32": 2.5, "i8": -3}


def _opcodes(*parts: bytes) -> bytes:
    return b"\x80\x02" + b"".join(parts)


def _set_state(module: str, name: str, state: bytes) -> bytes:
    """A pickle that looks up an allowed global and BUILDs ``state`` onto it, then returns a list."""
    return _opcodes(f"c{module}\n{name}\n".encode(), state, b"b0]", b".")


_SLOT_DEFAULTS = b"N}X\x0c\x00\x00\x00__defaults__(X\x06\x00\x00\x00utf-16ts\x86"  # (None, {__defaults__: ...})
_DICT_ATTR = b"}X\x05\x00\x00\x00ownedK\x01s"  # {"owned": 1}


@pytest.mark.parametrize("module, name", [("_codecs", "encode"), ("copyreg", "_reconstructor"),
                                          ("numpy.core.multiarray", "scalar"), ("numpy", "dtype"),
                                          ("builtins", "set"), ("datetime", "datetime"), ("decimal", "Decimal"),
                                          ("collections", "OrderedDict"), ("builtins", "bytearray")])
@pytest.mark.parametrize("state", [_SLOT_DEFAULTS, _DICT_ATTR], ids=["slot-state", "dict-state"])
def test_a_pickle_cannot_set_state_on_the_callables_it_may_use(tmp_path, module, name, state):
    import tasks.load as load

    before = {f: (f.__defaults__, dict(f.__dict__)) for f in (load._latin1_encode, load._reconstructor,
                                                              load._numpy_scalar, load._bytearray)}
    dtype_attrs = dict(vars(load._NumpyDtype))
    path = tmp_path / "build.pkl"
    path.write_bytes(_set_state(module, name, state))
    with pytest.raises(UnsafePickleError, match=rf"refused: pickle tries to set state on {module}\.{name}; "
                                                "nothing was run"):
        read_records(path)
    assert {f: (f.__defaults__, dict(f.__dict__)) for f in before} == before
    assert dict(vars(load._NumpyDtype)) == dtype_attrs


@pytest.mark.parametrize(
    "content, error, message",
    [
        # bytearray(2**31 - 1 << 8): a few bytes asking for gigabytes of zeros
        (_opcodes(b"c__builtin__\nbytearray\nJ\x00\x00\x00\x7f\x85R."), UnsafePickleError,
         r"refused: pickle asks for a bytearray of 2,130,706,432 bytes, more than the file holds"),
        (_opcodes(b"c__builtin__\nbytearray\n\x8a\x09" + (1 << 70).to_bytes(9, "little") + b"\x85R."),
         UnsafePickleError, "asks for a bytearray of"),
        (b"\x80\x04\x8e" + (1 << 62).to_bytes(8, "little") + b".", InputError, "declares an object larger than memory"),
        (b"\x80\x05\x96" + (1 << 62).to_bytes(8, "little") + b".", InputError, "declares an object larger than memory"),
        (_opcodes(b"cdatetime\ntimedelta\nJ\xff\xff\xff\x7f\x85R."), InputError, "OverflowError"),
        (_opcodes(b"cdecimal\nDecimal\nX\x03\x00\x00\x001e!\x85R."), InputError, "not a readable pickle"),
    ],
    ids=["bytearray-2GB", "bytearray-2**70", "binbytes8-2**62", "bytearray8-2**62", "timedelta-overflow",
         "decimal-garbage"],
)
def test_a_pickle_cannot_allocate_beyond_its_file_or_crash(tmp_path, content, error, message):
    path = tmp_path / "big.pkl"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        read_records(path)


@pytest.mark.parametrize(
    "line, message",
    [
        (b'{"prompt": "\\ud800", "price": 1}', r"lines.jsonl:2 holds text that is not valid Unicode"),
        (b'{"prompt": "x", "price": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "lines.jsonl:2 nests JSON"),
        (b"[" * 100_000, "lines.jsonl:2 (nests JSON|is nested too deeply)"),
        (b'{"prompt": "x", "price": ' + b"[" * 2_000 + b"1" + b"]" * 2_000 + b"}", "lines.jsonl:2 nests JSON"),
    ],
    ids=["lone-surrogate", "100k-nested", "100k-unclosed", "2k-nested"],
)
def test_jsonl_lines_that_json_libraries_choke_on_are_one_clear_error(tmp_path, line, message):
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b'{"prompt": "ok", "price": 1}\n' + line + b"\n")
    with pytest.raises(InputError, match=message):
        read_records(path)


def test_nan_and_huge_integers_still_load_for_the_template_to_refuse(tmp_path):
    path = tmp_path / "nan.jsonl"
    path.write_text('{"prompt": "x", "price": NaN}\n{"prompt": "y", "price": 1' + "0" * 400 + "}\n")
    records = read_records(path)
    assert math.isnan(records[0]["price"]) and records[1]["price"] == 10**400


def test_hashing_ahead_gives_the_same_digest_once_and_a_changed_file_a_new_one(tmp_path):
    import hashlib
    import threading

    from ftprep.fsio import hash_ahead, sha256_file

    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(3 << 20))
    hash_ahead(path)
    results = []
    readers = [threading.Thread(target=lambda: results.append(sha256_file(path))) for _ in range(3)]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    assert results == [hashlib.sha256(path.read_bytes()).hexdigest()] * 3
    path.write_bytes(b"changed")
    assert sha256_file(path) == hashlib.sha256(b"changed").hexdigest()
    path.unlink()
    with pytest.raises(FileNotFoundError):
        sha256_file(path)


def test_datasets_are_read_with_the_cyclic_collector_paused_and_it_comes_back(tmp_path, monkeypatch):
    import gc
    import threading

    import tasks.load
    from ftprep.records import collector_paused

    seen = []
    real = tasks.load._READERS["pickle"]
    monkeypatch.setitem(tasks.load._READERS, "pickle", lambda path: seen.append(gc.isenabled()) or real(path))
    path = tmp_path / "items.pkl"
    path.write_bytes(pickle.dumps([{"a": i} for i in range(10)]))
    assert gc.isenabled()
    assert len(read_records(path)) == 10 and seen == [False] and gc.isenabled()
    with pytest.raises(InputError):  # a failed read gives it back too
        (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
        read_records(tmp_path / "bad.pkl")
    assert gc.isenabled()
    # nested and concurrent reads: off until the last one ends
    inner_started, release = threading.Event(), threading.Event()

    def other_read() -> None:
        with collector_paused():
            inner_started.set()
            release.wait(10)

    thread = threading.Thread(target=other_read)
    with collector_paused():
        thread.start()
        inner_started.wait(10)
    assert not gc.isenabled()  # the other read is still going
    release.set()
    thread.join(10)
    assert gc.isenabled()
    # a collector someone turned off stays off
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_only_a_command_process_holds_its_record_stores_until_it_leaves():
    """``hold_until_exit`` (called by the console script, whose process leaves without teardown): a run's end then
    does not free its records object by object. Any other process frees a store when its run drops it."""
    import subprocess

    code = (
        "import gc, weakref\n"
        "from ftprep import records\n"
        "def made():\n"
        "    store = records.RecordStore(lambda path: [])\n"
        "    store.put('sha', [{'a': 1}])\n"
        "    return weakref.ref(store)\n"
        "first = made(); gc.collect()\n"
        "records.hold_until_exit()\n"
        "second = made(); gc.collect()\n"
        "print(first() is None, second() is not None)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["True", "True"], proc.stderr
