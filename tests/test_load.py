"""Loading datasets: real course pickles without importing their classes, and the tabular formats."""

from __future__ import annotations

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
