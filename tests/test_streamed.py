"""Streamed datasets: a JSONL read keeps only its line index; shuffled and projected access give the same records."""

from __future__ import annotations

import gc
import json
import random
import tracemalloc

import pytest

from ftprep.errors import InputError
from ftprep.models import SplitConfig, Template
from ftprep.records import project, take
from tasks.format import compile_template
from tasks.load import describe, field_names, new_store, read_records
from tasks.split import plan_split, slice_indices
from tasks.streamed import JsonlRecords, ParquetRecords
from tasks.write import write_jsonl


def _items(n: int) -> list[dict]:
    rng = random.Random(5)
    return [{"title": f"item {i} " + "x" * rng.randrange(200, 400), "price": round(rng.uniform(1, 999), 2),
             "tags": ["a", "b"][: i % 3]} for i in range(n)]


def _jsonl(path, items, blanks: bool = False) -> None:
    with open(path, "w") as f:
        for i, item in enumerate(items):
            f.write(json.dumps(item) + "\n")
            if blanks and i % 7 == 0:
                f.write("\n")


def test_a_jsonl_read_keeps_only_its_line_index(tmp_path):
    path = tmp_path / "big.jsonl"
    _jsonl(path, _items(50_000))
    size = path.stat().st_size
    gc.collect()
    tracemalloc.start()
    try:
        records = read_records(path)
        count = sum(1 for _ in records)  # a full pass, in order
        for i in random.Random(1).sample(range(len(records)), 200):
            records[i]
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(records, JsonlRecords) and count == len(records) == 50_000
    assert records.index_bytes == 8 * 50_001  # and the end of the last line
    assert peak < size / 20, (peak, size)  # parsed whole, the records would take several times the file
    assert kept < 2 * records.index_bytes + 200_000, kept


def test_shuffled_and_sliced_access_match_a_full_read(tmp_path):
    items = _items(3_000)
    path = tmp_path / "d.jsonl"
    _jsonl(path, items, blanks=True)  # blank lines are not records
    records = read_records(path)
    assert list(records) == items
    ref, _ = describe(path)
    plan = plan_split(ref, SplitConfig(train_size=2_500, validation_size=500, shuffle=True, seed=11))
    order = slice_indices(plan.train)
    batch = take(records, order[:2000])
    assert [batch[i] for i in order[:2000]] == [items[i] for i in order[:2000]]
    assert [records[i] for i in order[2000:]] == [items[i] for i in order[2000:]]
    assert records[10:20] == items[10:20] and records[-1] == items[-1]
    with pytest.raises(IndexError):
        records[3_000]


def test_shuffled_write_of_jsonl_equals_the_write_of_the_same_records_in_memory(tmp_path):
    items = _items(5_000)
    path = tmp_path / "d.jsonl"
    _jsonl(path, items)
    store = new_store()
    ref, records = describe(path, store)
    order = slice_indices(plan_split(ref, SplitConfig(train_size=4_000, validation_size=0, shuffle=True,
                                                      seed=2)).train)
    render = compile_template(Template(name="t", system=None, user="{title}", assistant="{price:.2f}"))
    streamed = write_jsonl(tmp_path / "a.jsonl", records, order, render)
    in_memory = write_jsonl(tmp_path / "b.jsonl", items, order, render)
    assert streamed == in_memory


def test_a_file_changed_after_loading_is_refused_not_mixed(tmp_path):
    path = tmp_path / "d.jsonl"
    _jsonl(path, _items(100))
    records = read_records(path)
    _jsonl(path, _items(101))
    with pytest.raises(InputError, match="changed since it was loaded"):
        records[5]


def test_parquet_reads_row_groups_of_the_projected_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = [{"title": f"t{i}", "price": float(i) if i % 50 else float("nan"), "note": None if i % 3 else "n"}
             for i in range(10_000)]
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(items), path, row_group_size=1_500)
    expected = [dict(r, price=None if r["price"] != r["price"] else r["price"]) for r in items]  # NaN: empty
    records = read_records(path)
    assert isinstance(records, ParquetRecords) and field_names(records) == ("title", "price", "note")
    assert list(records) == expected
    narrow = project(records, ("price", "missing"))
    assert narrow.columns == ("price",) and narrow[1_499] == {"price": 1_499.0}
    order = list(range(10_000))
    random.Random(3).shuffle(order)
    batch = take(narrow, order[:2000])
    assert [batch[i] for i in order[:2000]] == [{"price": expected[i]["price"]} for i in order[:2000]]
    assert records[-1] == expected[-1] and records[2_990:3_010] == expected[2_990:3_010]


def test_a_damaged_parquet_file_is_one_clear_error_at_load(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(_items(2_000)), path, compression="none")
    data = bytearray(path.read_bytes())
    data[200:4000] = b"\xff" * 3800  # inside the first data pages; the footer stays readable
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="is not a readable Parquet file"):
        read_records(path)
