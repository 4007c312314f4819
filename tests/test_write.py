"""Writing: streamed, hashed, atomic: a failure leaves no partial file behind."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from ftprep import outputs
from ftprep.errors import InputError, TemplateError
from ftprep.models import FormatPlan, SplitConfig
from ftprep.names import MANIFEST
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


def committed(files, out) -> None:
    """What the publish step does: write a manifest into the run's generation and make it current."""
    outputs.commit(out, Path(files.train.path).parent, json.dumps({"files": files.model_dump()}))


def listing(out) -> list[str]:
    return sorted(p for p in os.listdir(out) if p != outputs.STATE)


def test_writes_both_files_with_hashes_and_counts(tmp_path):
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=10)
    out = tmp_path / "out"
    files = write_split(plan, fmt, out, STORE)
    assert files.train.examples == 20 and files.validation.examples == 10
    for f in files.files():
        data = open(f.path, "rb").read()
        assert f.bytes == len(data) and f.sha256 == hashlib.sha256(data).hexdigest()
        assert data.endswith(b"\n") and data.count(b"\n") == f.examples
    assert listing(out) == []  # written, not yet committed: nothing is visible at the usual names
    committed(files, out)
    lines = (out / FILE_NAMES["validation"]).read_text().splitlines()
    assert json.loads(lines[0])["messages"][1]["content"] == "How much does this cost?\n\nThing 20"
    assert listing(out) == sorted([*FILE_NAMES.values(), MANIFEST])
    assert (out / FILE_NAMES["train"]).read_bytes() == open(files.train.path, "rb").read()
    assert files_intact(files)
    os.unlink(files.train.path)
    Path(files.train.path).write_text("changed\n")
    assert not files_intact(files)


def test_files_follow_the_umask(tmp_path):
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=10)
    old = os.umask(0o027)
    try:
        files = write_split(plan, fmt, tmp_path / "out", STORE)
        committed(files, tmp_path / "out")
    finally:
        os.umask(old)
    for f in files.files():
        assert stat.S_IMODE(os.stat(f.path).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "out" / MANIFEST).st_mode) == 0o640


def test_a_bad_record_leaves_no_file_and_keeps_the_old_ones(tmp_path):
    out = tmp_path / "out"
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=10)
    good = write_split(plan, fmt, out, STORE)
    committed(good, out)
    names = [*FILE_NAMES.values(), MANIFEST]
    before = {name: (out / name).read_bytes() for name in names}
    records = [item(i) for i in range(30)]
    records[22] = item(22, price=float("nan"))  # in the validation slice: training is already written by then
    plan, fmt = course_plan(tmp_path, records, train_size=20, validation_size=10)
    with pytest.raises(TemplateError, match="record 22: field 'price' is NaN"):
        write_split(plan, fmt, out, STORE)
    assert listing(out) == sorted(names)
    assert sorted(os.listdir(out / outputs.STATE)) == [outputs.CURRENT, Path(good.train.path).parent.name]
    assert {name: (out / name).read_bytes() for name in names} == before
    assert files_intact(good)


def test_a_written_but_uncommitted_pair_changes_nothing_and_is_cleaned_up(tmp_path):
    out = tmp_path / "out"
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=10)
    committed(good := write_split(plan, fmt, out, STORE), out)
    before = {name: (out / name).read_bytes() for name in (*FILE_NAMES.values(), MANIFEST)}
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=10, validation_size=10)
    new = write_split(plan, fmt, out, STORE)  # e.g. validation then fails: never committed
    assert {name: (out / name).read_bytes() for name in before} == before
    outputs.release(Path(new.train.path).parent)  # as when its process ends
    outputs.clean(out)
    assert sorted(os.listdir(out / outputs.STATE)) == [outputs.CURRENT, Path(good.train.path).parent.name]


def test_output_folder_not_writable(tmp_path):
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=10)
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
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=10)
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=0)
    committed(write_split(plan, fmt, out, STORE), out)
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=0)
    files = write_split(plan, fmt, out, STORE)
    committed(files, out)
    assert files.validation is None and not (out / FILE_NAMES["validation"]).exists()
    assert (out / FILE_NAMES["train"]).exists()


def test_plain_files_of_an_older_ftprep_become_links_to_the_committed_pair(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in (*FILE_NAMES.values(), MANIFEST):
        (out / name).write_text("written by an older ftprep\n")
    plan, fmt = course_plan(tmp_path, [item(i) for i in range(30)], train_size=20, validation_size=10)
    files = write_split(plan, fmt, out, STORE)
    committed(files, out)
    for f in files.files():
        link = out / FILE_NAMES[f.role]
        assert link.is_symlink() and link.read_bytes() == Path(f.path).read_bytes()
    assert (out / MANIFEST).is_symlink()
