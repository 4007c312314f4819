"""A training file checked while it is written gives the report a scan of the finished file gives."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tasks import scan_ahead, scan_child
from tasks.scan_ahead import Ahead
from tasks.token_stats import SAMPLE
from tasks.validation_scan import FileScan, scan_files

pytestmark = pytest.mark.skipif(not scan_ahead.supported(), reason="checking ahead needs Linux's /proc/self/fd")

SETTINGS = ("o200k_base", 65536, False, True)  # (encoding, limit, exact_tokens, raw_digest): as validate_written


def _line(user: str, answer: str = "Price is $20.00") -> bytes:
    return json.dumps({"messages": [{"role": "system", "content": "You estimate prices."},
                                    {"role": "user", "content": user},
                                    {"role": "assistant", "content": answer}]}, separators=(",", ":")).encode() + b"\n"


def _pair(n: int) -> tuple[list[bytes], list[bytes]]:
    """A training file large enough to be sampled, with a problem of every kind the merge handles."""
    train = [_line(f"item {i} " + "word " * (i % 37)) for i in range(n)]
    train[10] = train[5]  # a duplicate
    train[n // 2] = train[7]  # another, far away: in another part
    train[2000] = b"{not json\n"
    train[3000] = b"\n"  # a blank line between examples
    validation = [_line(f"held out {i}") for i in range(40)]
    validation[3] = train[900]  # leaked whole
    validation[4] = _line("item 901 " + "word " * (901 % 37), answer="Price is $1.00")  # its prompt leaked
    return train, validation


def _write(stage: Path, train: list[bytes], validation: list[bytes], tell) -> None:
    """Write as the writer does: the validation file whole, then the training file in chunks of whole lines,
    telling ``tell`` (given the open file's path) the bytes written after each."""
    stage.mkdir(parents=True)
    (stage / "validation.jsonl").write_bytes(b"".join(validation))
    with open(stage / "train.jsonl", "xb", buffering=0) as f:
        written, told = 0, tell(stage / "train.jsonl")
        for i in range(0, len(train), 500):
            written += f.write(b"".join(train[i:i + 500]))
            if told is not None:
                told(written, os.fstat(f.fileno()).st_mtime_ns)


def _fields(scan: FileScan) -> dict:
    return {k: v for k, v in vars(scan).items() if k != "ahead"}


def _files(folder: Path) -> list[tuple[Path, str]]:
    return [(folder / "train.jsonl", "train"), (folder / "validation.jsonl", "validation")]


def _ahead(expected: int, settings=SETTINGS):
    made: list[Ahead] = []

    def tell(path: Path):
        made.append(Ahead(str(path), str(path.parent / "validation.jsonl"), expected, settings, 2, part_bytes=400_000))
        return made[0].more

    return made, tell


def test_parts_checked_as_written_give_the_scan_of_the_finished_file(tmp_path):
    train, validation = _pair(30_000)
    made, tell = _ahead(len(train))
    _write(tmp_path / "tmp-stage", train, validation, tell)
    os.rename(tmp_path / "tmp-stage", tmp_path / "gen")  # sealed: the files' folder has another name now
    ahead = scan_files(_files(tmp_path / "gen"), *SETTINGS[:2], 2, *SETTINGS[2:], ahead=made[0])
    plain = scan_files(_files(tmp_path / "gen"), *SETTINGS[:2], 2, *SETTINGS[2:])
    assert ahead[0].ahead >= 5 and plain[0].ahead == 0  # most of it was checked while it was written
    assert [_fields(s) for s in ahead] == [_fields(s) for s in plain]
    assert ahead[0].sampled and SAMPLE * 0.9 < len(ahead[0].tokens) < SAMPLE * 1.1  # the scan's own sample
    assert ahead[1].path == tmp_path / "gen" / "validation.jsonl"
    lines = ahead[0].lines
    assert lines["duplicate_example"] == [11, 15_001] and lines["invalid_json"] == [2001]
    assert lines["blank_line"] == [3001] and ahead[0].leaked and ahead[0].leaked_prompts


@pytest.mark.parametrize("case", ["sample too small", "file changed", "rewritten in place", "other settings",
                                  "validation changed"])
def test_work_ahead_that_does_not_fit_the_scan_is_dropped(tmp_path, case):
    train, validation = _pair(30_000)
    # told ten times the examples: the parts count a sample ten times too small for the finished file
    made, tell = _ahead(len(train) * (10 if case == "sample too small" else 1))
    _write(tmp_path / "out", train, validation, tell)
    settings = list(SETTINGS)
    if case == "file changed":
        with open(tmp_path / "out" / "train.jsonl", "ab") as f:
            f.write(_line("added later"))
    elif case == "rewritten in place":  # the same size, after the writer's last note (a later clock tick)
        time.sleep(0.05)
        with open(tmp_path / "out" / "train.jsonl", "r+b") as f:
            f.seek(len(train[0]) + 10)
            f.write(b"Z")
    elif case == "other settings":
        settings[2] = True  # exact token counts asked for
    elif case == "validation changed":
        with open(tmp_path / "out" / "validation.jsonl", "ab") as f:
            f.write(train[1])  # now leaked too
    ahead = scan_files(_files(tmp_path / "out"), *settings[:2], 2, *settings[2:], ahead=made[0])
    plain = scan_files(_files(tmp_path / "out"), *settings[:2], 2, *settings[2:])
    assert ahead[0].ahead == 0
    assert [_fields(s) for s in ahead] == [_fields(s) for s in plain]


def test_the_command_s_validation_process_checks_the_training_file_as_it_is_written(tmp_path):
    """Through the real validation process and its notes: planned, told, taken over; dropped after a failed
    write. Small enough files are not checked ahead (their write is over in a moment)."""
    scanner = scan_child.start("o200k_base")
    try:
        scanner.reason("o200k_base")  # ready, as a command's is by its write: it reads the notes as they come
        scan_child.plan(SETTINGS, 2)
        train, validation = _pair(scan_ahead.AHEAD_MIN_EXAMPLES)
        told: list[object] = []

        def tell(path: Path):
            told.append(scan_child.ahead(path, path.parent / "validation.jsonl", len(train)))
            return told[-1]

        _write(tmp_path / "stage", train, validation, tell)
        scanner._ask(("reason", "o200k_base"))  # a round trip: the notes before it are read (the test is fast)
        os.rename(tmp_path / "stage", tmp_path / "gen")
        args = ([(str(p), r) for p, r in _files(tmp_path / "gen")], *SETTINGS[:2], 2, *SETTINGS[2:])
        by_child, _ = scanner.scan(*args)
        assert told[0] is not None and by_child[0].ahead >= 1
        here = scan_files(args[0], *SETTINGS[:2], 2, *SETTINGS[2:])
        assert [_fields(s) for s in by_child] == [_fields(s) for s in here]

        _write(tmp_path / "again", train, validation, tell)
        scan_child.drop_ahead()  # the write failed after all
        again, _ = scanner.scan([(str(p), r) for p, r in _files(tmp_path / "again")], *args[1:])
        assert told[1] is not None and again[0].ahead == 0 and again[0].examples == by_child[0].examples
        assert scanner.alive()

        assert scan_child.ahead(tmp_path / "small.jsonl", None, scan_ahead.AHEAD_MIN_EXAMPLES - 1) is None
    finally:
        scan_child.stop()
        scan_child._plan = None
    assert scan_child.ahead(tmp_path / "gen" / "train.jsonl", None, 10**6) is None  # no validation process


def test_a_failed_note_leaves_the_scan_to_read_the_whole_file(tmp_path):
    """A note the validation process cannot act on (the file is gone) drops the work ahead, never the scan."""
    scanner = scan_child.start("o200k_base")
    try:
        assert scanner.tell(("ahead", str(tmp_path / "missing.jsonl"), None, 10**6, SETTINGS, 2))
        assert scanner.tell(("written", str(tmp_path / "missing.jsonl"), 1000, 0))
        train, validation = _pair(30_000)
        _write(tmp_path / "out", train, validation, lambda path: None)
        scans, _ = scanner.scan([(str(p), r) for p, r in _files(tmp_path / "out")], *SETTINGS[:2], 2,
                                *SETTINGS[2:])
        assert scans[0].examples == 29_998 and scans[0].ahead == 0
    finally:
        scan_child.stop()
