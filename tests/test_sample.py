"""Tests for scripts/sample.py: the deterministic generator of course-shaped items and its pickle."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import pickletools
import re
import statistics
import sys
import types

import pytest

from scripts import sample
from scripts.sample import FIELDS, MAX_PRICE, MIN_PRICE, PREFIX, QUESTION, generate_items, write_pickle

ALLOWED_OPCODES = {
    "PROTO", "FRAME", "EMPTY_LIST", "MEMOIZE", "MARK", "STACK_GLOBAL", "GLOBAL", "EMPTY_TUPLE", "NEWOBJ",
    "EMPTY_DICT", "SHORT_BINUNICODE", "BINUNICODE", "BINFLOAT", "BININT", "BININT1", "BININT2", "LONG1",
    "NEWTRUE", "NEWFALSE", "NONE", "SETITEMS", "BUILD", "APPEND", "APPENDS", "BINGET", "LONG_BINGET", "STOP",
}
#: sha256 of ``write_pickle(path, 600, seed=42)``, the ``make run`` sample: the bytes the generator made
#: before its vocabulary moved to sample_vocab.json and its hand-written pickler gave way to ``pickle``.
SAMPLE_600_SHA256 = "77e2da1529cd738027c42ab260cbf2f1bd3f4b00620f152d9616bdbdcb1c27d9"


@pytest.fixture(scope="module")
def items600() -> list[dict]:
    return list(generate_items(600))


@pytest.fixture
def fake_items_module(monkeypatch: pytest.MonkeyPatch) -> type:
    """Make ``items.Item`` importable for the duration of a test, like the course's own module."""
    module = types.ModuleType("items")

    class Item:
        pass

    Item.__module__ = "items"
    Item.__qualname__ = Item.__name__ = "Item"
    module.Item = Item
    monkeypatch.setitem(sys.modules, "items", module)
    return Item


def _text_of(prompt: str) -> str:
    head = QUESTION + "\n\n"
    assert prompt.startswith(head)
    body, sep, _price = prompt[len(head):].rpartition("\n\n" + PREFIX)
    assert sep
    return body


def _opcodes(data: bytes) -> set[str]:
    return {op.name for op, _arg, _pos in pickletools.genops(data)}


# --- generate_items -------------------------------------------------------------------------------


def test_items_have_exactly_the_course_fields(items600):
    for item in items600:
        assert tuple(item) == FIELDS
        assert isinstance(item["title"], str) and item["title"]
        assert type(item["price"]) is float
        assert item["category"] in sample.CATEGORIES
        assert type(item["token_count"]) is int
        assert item["details"] is None or isinstance(item["details"], str)
        assert item["include"] is True
        assert isinstance(item["prompt"], str)


def test_generation_is_deterministic_and_prefix_stable(items600):
    assert list(generate_items(600)) == items600
    assert list(generate_items(37)) == items600[:37]
    assert list(generate_items(600, seed=42))[500:] == items600[500:]
    other = list(generate_items(37, seed=7))
    assert other != items600[:37]
    assert other == list(generate_items(80, seed=7))[:37]


def test_prompt_formula_is_exact_for_every_item(items600):
    for item in items600:
        prompt, price = item["prompt"], item["price"]
        text = _text_of(prompt)
        assert prompt == QUESTION + "\n\n" + text + "\n\n" + PREFIX + str(round(price)) + ".00"
        assert prompt == sample.make_prompt(text, price)
        title_line, newline, body = text.partition("\n")
        assert newline and "\n" not in body and body
        assert title_line in (item["title"], sample._scrub(item["title"]))


def test_price_uses_plain_round_half_to_even(items600):
    # The course writes str(round(price)): Python rounds halves to even, so 2.5 -> 2 and 3.5 -> 4.
    assert sample.make_prompt("t", 2.5).endswith("\n\nPrice is $2.00")
    assert sample.make_prompt("t", 3.5).endswith("\n\nPrice is $4.00")
    assert sample.make_prompt("t", 0.5).endswith("\n\nPrice is $0.00")
    assert sample.make_prompt("t", 12.51).endswith("\n\nPrice is $13.00")
    halves = [it for it in items600 if it["price"] % 1 == 0.5]
    even_halves = [it for it in halves if int(it["price"]) % 2 == 0]
    assert len(even_halves) >= 3, "the sample should exercise half-to-even rounding"
    for it in even_halves:
        assert it["prompt"].endswith(f"{PREFIX}{int(it['price'])}.00")


def test_prices_are_in_range_with_two_decimals(items600):
    prices = [it["price"] for it in items600]
    assert all(MIN_PRICE <= p <= MAX_PRICE for p in prices)
    assert all(round(p, 2) == p for p in prices)
    assert sum(p < 200 for p in prices) / len(prices) > 0.75  # skewed low, like the course data
    assert max(prices) > 300 and min(prices) < 10


def test_token_count_is_the_documented_estimate(items600):
    for it in items600:
        assert it["token_count"] == max(1, round(len(it["prompt"]) / 4))


def test_text_is_realistic_and_varied(items600):
    lengths = sorted(len(it["prompt"]) for it in items600)
    assert 520 <= statistics.median(lengths) <= 680
    assert lengths[len(lengths) // 20] >= 280 and lengths[-1] <= 1150
    titles = [it["title"] for it in items600]
    assert len(set(titles)) / len(titles) > 0.99
    assert {it["category"] for it in items600} == set(sample.CATEGORIES)
    assert len({it["title"].split()[0] for it in items600}) > 100  # many brands
    assert sum(it["details"] is None for it in items600) < 60


def test_details_are_json_strings(items600):
    for it in items600:
        if it["details"] is not None:
            assert isinstance(json.loads(it["details"]), dict)


def test_some_items_carry_characters_that_are_hard_to_escape(items600):
    texts = [_text_of(it["prompt"]) for it in items600]
    assert sum(any(ord(c) > 127 for c in t) for t in texts) >= 5
    assert sum(any(c in t for c in "é°½™ü") for t in texts) >= 3
    assert sum('"' in t for t in texts) >= 3  # inch marks and quotes
    assert sum("\\" in t for t in texts) >= 2
    assert sum("$" in t for t in texts) >= 3  # a literal $ before the "Price is $" line
    assert sum(it["details"] is not None and "\n" in it["details"] for it in items600) >= 3
    assert sum('"' in it["title"] or any(ord(c) > 127 for c in it["title"]) for it in items600) >= 2
    # ...but they stay a small fraction.
    assert sum(any(ord(c) > 127 for c in t) for t in texts) < 60
    for it in items600:  # and they all survive a JSON round trip
        assert json.loads(json.dumps(it, ensure_ascii=False)) == it


def test_scrub_matches_the_course_regex(items600):
    def course_scrub(stuff: str) -> str:
        stuff = re.sub(r'[:\[\]"{}【】\s]+', " ", stuff).strip()
        stuff = stuff.replace(" ,", ",").replace(",,,", ",").replace(",,", ",")
        words = stuff.split(" ")
        return " ".join(w for w in words if len(w) < 7 or not any(c.isdigit() for c in w))

    samples = [it["prompt"] + " " + (it["details"] or "") for it in items600[:200]]
    samples.append(' a ,, b,,, c : [x] {y} 【z】\t\n 1234567 abcdefg a1b2c3d4 "q" ')
    for s in samples:
        assert sample._scrub(s) == course_scrub(s)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_generate_items_rejects_bad_n(bad):
    with pytest.raises(ValueError):
        list(generate_items(bad))


# --- write_pickle ---------------------------------------------------------------------------------


def test_the_make_run_sample_has_not_changed(tmp_path):
    path = tmp_path / "items.pkl"
    write_pickle(path, 600, seed=42)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SAMPLE_600_SHA256


def test_pickle_is_byte_identical_for_the_same_inputs(tmp_path):
    a, b, c = tmp_path / "a.pkl", tmp_path / "b.pkl", tmp_path / "c.pkl"
    assert write_pickle(a, 300, seed=3) == 300
    assert write_pickle(b, 300, seed=3) == 300
    write_pickle(c, 300, seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pkl", "b.pkl", "c.pkl"]  # no temp files


def test_pickle_opcodes_are_only_the_whitelisted_ones(tmp_path):
    path = tmp_path / "items.pkl"
    write_pickle(path, 1200)
    data = path.read_bytes()
    ops = _opcodes(data)
    assert ops <= ALLOWED_OPCODES, ops - ALLOWED_OPCODES
    assert "REDUCE" not in ops
    assert {"FRAME", "STACK_GLOBAL", "NEWOBJ", "BUILD", "APPENDS", "BINGET"} <= ops
    globals_ = [arg for op, arg, _pos in pickletools.genops(data) if op.name == "SHORT_BINUNICODE"][:2]
    assert globals_ == ["items", "Item"]
    assert data[:2] == b"\x80\x04"


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_pickles_are_valid(tmp_path, fake_items_module, n):
    path = tmp_path / "tiny.pkl"
    write_pickle(path, n)
    assert _opcodes(path.read_bytes()) <= ALLOWED_OPCODES
    with path.open("rb") as f:
        loaded = pickle.load(f)
    assert [vars(o) for o in loaded] == list(generate_items(n))


def test_items_class_is_not_importable(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "items", raising=False)
    path = tmp_path / "items.pkl"
    write_pickle(path, 3)
    with path.open("rb") as f, pytest.raises((ModuleNotFoundError, AttributeError)):
        pickle.load(f)
    assert "items" not in sys.modules


def test_write_pickle_leaves_an_existing_items_module_alone(tmp_path, fake_items_module):
    before = sys.modules["items"]
    write_pickle(tmp_path / "items.pkl", 3)
    assert sys.modules["items"] is before and before.Item is fake_items_module


def test_pickle_round_trips_through_an_items_module(tmp_path, fake_items_module, items600):
    path = tmp_path / "items.pkl"
    write_pickle(path, 600)
    with path.open("rb") as f:
        loaded = pickle.load(f)
    assert isinstance(loaded, list) and len(loaded) == 600
    assert all(type(o) is fake_items_module for o in loaded)
    assert [vars(o) for o in loaded] == items600
    assert all(tuple(vars(o)) == FIELDS for o in loaded)
    # Category strings and attribute names are shared objects, as in the course pickles.
    cats = {id(o.category) for o in loaded}
    assert len(cats) == len({o.category for o in loaded})


@pytest.mark.parametrize("n", [1, 2, 1001])
def test_pickle_matches_the_c_pickler_byte_for_byte(tmp_path, fake_items_module, n):
    dicts = list(generate_items(n, seed=11))
    objs = []
    for d in dicts:
        obj = fake_items_module.__new__(fake_items_module)
        obj.__dict__.update(d)
        objs.append(obj)
    path = tmp_path / "items.pkl"
    write_pickle(path, n, seed=11)
    assert path.read_bytes() == pickle.dumps(objs, protocol=4)


def test_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    def broken(obj, file, protocol):
        file.write(b"\x80\x04partial")
        raise RuntimeError("boom")

    monkeypatch.delitem(sys.modules, "items", raising=False)
    monkeypatch.setattr(sample.pickle, "dump", broken)
    target = tmp_path / "items.pkl"
    with pytest.raises(RuntimeError, match="boom"):
        write_pickle(target, 10)
    assert list(tmp_path.iterdir()) == []
    assert "items" not in sys.modules


def test_write_pickle_replaces_an_existing_file(tmp_path):
    target = tmp_path / "items.pkl"
    target.write_bytes(b"old")
    write_pickle(target, 2)
    assert target.read_bytes()[:2] == b"\x80\x04"


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_writes_the_file_and_reports_it(tmp_path, capsys):
    out = tmp_path / "data" / "sample" / "items.pkl"
    assert sample.main(["--n", "25", "--seed", "42", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    assert "25 items" in line and str(out) in line and f"{os.path.getsize(out):,} bytes" in line
    assert out.read_bytes() == _written(tmp_path / "ref.pkl", 25, 42)


def test_cli_rejects_negative_n(tmp_path):
    with pytest.raises(SystemExit):
        sample.main(["--n", "-3", "--out", str(tmp_path / "x.pkl")])


def _written(path, n, seed):
    write_pickle(path, n, seed)
    return path.read_bytes()
