"""Validation at speed loses nothing: the plain-line short path, and a file cut into parts over two processes."""

from __future__ import annotations

import json

import orjson
import pytest

from ftprep.tokens import text_counter
from tasks.token_stats import ALL
from tasks.validate import validate_files
from tasks.validation_line import _plain, check_example
from tasks.validation_scan import PART_BYTES, scan_file

COUNT, _ = text_counter("o200k_base")

PLAIN = [
    [("system", "You estimate prices."), ("user", "How much?"), ("assistant", "Price is $1.00")],
    [("user", "How much?"), ("assistant", "$1")],
    [("developer", "d"), ("user", "q"), ("assistant", "a")],
    [("user", "q"), ("user", "q2"), ("assistant", "a")],
    [("system", "s"), ("user", "q")],
    [("assistant", "a")],
    [("system", "s"), ("tool", "t"), ("function", "f"), ("assistant", " a ")],
]
NOT_PLAIN = [  # the short path must leave these to the full checks
    [("user", "   "), ("assistant", "a")],
    [("user", "\u2003\x1c"), ("assistant", "a")],
    [("user", ""), ("assistant", "a")],
    [("human", "q"), ("assistant", "a")],
]


def line(messages: list[tuple[str, str]], weight: bool = False) -> bytes:
    ms = [{"role": r, "content": c} for r, c in messages]
    if weight:  # a valid key the short path does not take: the same example through the full checks
        ms[0]["weight"] = 1
    return orjson.dumps({"messages": ms})


@pytest.mark.parametrize("messages", PLAIN + NOT_PLAIN)
def test_the_short_path_finds_what_the_full_checks_find(messages):
    plain, full = line(messages), line(messages, weight=True)
    assert (_plain(orjson.loads(plain)) is not None) == (messages in PLAIN)
    assert _plain(orjson.loads(full)) is None
    short, long = (check_example(raw, 1, COUNT, limit=65536) for raw in (plain, full))
    assert sorted(short.codes) == sorted(long.codes)
    assert (short.upper is None) == (long.upper is None) and short.prompt == long.prompt


def lines_of_a_messy_file() -> bytes:
    good = [json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": f"item {i}"},
                                     {"role": "assistant", "content": f"Price is ${i}.00"}]}) for i in range(300)]
    rows = [r.encode() for r in good]
    rows[0] = b"\xef\xbb\xbf" + rows[0]  # a BOM
    rows[40] = b""  # a blank line between examples
    rows[77] = b'{"messages": [}'
    rows[120] = b"\xff\xfe not utf-8"
    rows[150] = rows[3]  # duplicates, far apart: in other parts
    rows[299] = rows[3]
    rows[200] = rows[200] + b"\r"  # a CRLF line is the same line
    return b"\n".join(rows) + b"\n\n"  # a trailing blank line is harmless


def test_a_file_in_many_parts_on_two_processes_gives_what_one_part_gives(tmp_path):
    path = tmp_path / "messy.jsonl"
    path.write_bytes(lines_of_a_messy_file())
    one = scan_file(path, "train", "o200k_base", 65536, 1, part_bytes=PART_BYTES)
    many = scan_file(path, "train", "o200k_base", 65536, 2, part_bytes=700)
    assert one.lines == many.lines and one.examples == many.examples and one.tokens == many.tokens
    assert one.seen == many.seen
    assert one.lines["bom"] == [1] and one.lines["blank_line"] == [41] and one.lines["invalid_json"] == [78]
    assert one.lines["not_utf8"] == [121] and one.lines["duplicate_example"] == [151, 300]


def test_leakage_is_found_by_the_training_files_workers(tmp_path):
    def ex(user: str, answer: str = "a") -> str:
        return json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": user},
                                        {"role": "assistant", "content": answer}]})

    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(ex(f"train {i}") for i in range(200)) + "\n")
    val = tmp_path / "val.jsonl"
    val.write_text("\n".join([ex("val 0"), ex("train 17"), ex("val 2"), ex("train 150", "other answer")]
                             + [ex(f"val {i}") for i in range(4, 12)]) + "\n")
    validation = scan_file(val, "validation", "o200k_base", 65536, 1, keep_lines=True)
    many = scan_file(train, "train", "o200k_base", 65536, 2, against=validation, part_bytes=500)
    assert {validation.example_lines[d] for d in many.leaked} == {2}
    assert {validation.prompt_lines[d] for d in many.leaked_prompts} == {2, 4}
    report = validate_files([(train, "train"), (val, "validation")], workers=2)
    found = {f.code: f.lines for f in report.findings}
    assert found["leakage_exact"] == (2,) and found["leakage_prompt"] == (4,)


def test_whether_an_example_with_tools_is_over_the_limit_does_not_depend_on_the_sample():
    """Tool definitions are counted as the cookbook estimates them, and an estimate can exceed their bytes (an enum
    item ``1,`` is two bytes and about four tokens): such an example is counted whether it is in the sample or not."""
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "integer", "enum": list(range(10)) * 1700}}}}}
    raw = orjson.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                        "tools": [tool]})
    assert len(raw) + 32 < 65536  # its bytes alone would clear it
    inside, outside = (check_example(raw, 1, COUNT, limit=65536, cut=cut) for cut in (ALL, 0))
    assert inside.sampled and not outside.sampled
    assert inside.upper == outside.upper > 65536 and outside.estimated
