"""Writing: streamed, hashed, atomic: a failure leaves no partial file behind."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ftprep.errors import InputError, TemplateError
from ftprep.models import FormatPlan, SplitConfig
from tasks.format import PRESETS, template_fields
from tasks.load import describe, new_store
from tasks.split import plan_split
from tasks.write import FILE_NAMES, files_intact, write_split

STORE = new_store()


def course_plan(tmp_path, records, **config):
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    ref, _ = describe(data, STORE)
    template = PRESETS["course"]
    return plan_split(ref, SplitConfig(**config)), FormatPlan(template=template, fields=template_fields(template),
                                                              preview="")


def item(i: int, price: float = 10.0) -> dict:
    return {"prompt": f"How much does this cost to the nearest dollar?\n\nThing {i}\n\nPrice is $10.00", "price": price}


def test_writes_both_files_with_hashes_and_counts(tmp_path):
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=5)
    out = tmp_path / "out"
    files = write_split(plan, fmt, out, STORE)
    assert files.train.examples == 20 and files.validation.examples == 5
    for f in files.files():
        data = open(f.path, "rb").read()
        assert f.bytes == len(data) and f.sha256 == hashlib.sha256(data).hexdigest()
        assert data.endswith(b"\n") and data.count(b"\n") == f.examples
    lines = (out / FILE_NAMES["validation"]).read_text().splitlines()
    assert json.loads(lines[0])["messages"][1]["content"] == "How much does this cost?\n\nThing 20"
    assert sorted(os.listdir(out)) == sorted(FILE_NAMES.values())
    assert files_intact(files)
    (out / FILE_NAMES["train"]).write_text("changed\n")
    assert not files_intact(files)


def test_a_bad_record_leaves_no_file_and_keeps_the_old_ones(tmp_path):
    out = tmp_path / "out"
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=5)
    good = write_split(plan, fmt, out, STORE)
    before = {name: (out / name).read_bytes() for name in FILE_NAMES.values()}
    records = [item(i) for i in range(30)]
    records[22] = item(22, price=float("nan"))  # in the validation slice: training is already written by then
    plan, fmt = course_plan(tmp_path, records, train_size=20, validation_size=5)
    with pytest.raises(TemplateError, match="record 22: field 'price' is NaN"):
        write_split(plan, fmt, out, STORE)
    assert sorted(os.listdir(out)) == sorted(FILE_NAMES.values())  # no temporary files left
    assert {name: (out / name).read_bytes() for name in FILE_NAMES.values()} == before
    assert files_intact(good)


def test_output_folder_not_writable(tmp_path):
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=5)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot be created"):
        write_split(plan, fmt, blocker / "out", STORE)
    if os.geteuid() != 0:  # root writes anywhere; the check is still exercised by the case above
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(InputError, match="not writable"):
            write_split(plan, fmt, ro, STORE)


def test_no_validation_removes_a_stale_validation_file(tmp_path):
    out = tmp_path / "out"
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=5)
    write_split(plan, fmt, out, STORE)
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=0)
    files = write_split(plan, fmt, out, STORE)
    assert files.validation is None and not (out / FILE_NAMES["validation"]).exists()
