from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from ftprep.errors import InputError
from ftprep.models import DatasetRef, SplitConfig
from ftprep.openai_models import MIN_EXAMPLES
from tasks.split import plan_split, slice_indices


def ref(n: int, sha: str = "a" * 64) -> DatasetRef:
    return DatasetRef(path=f"/data/{sha[:4]}.pkl", sha256=sha, format="pickle", size_bytes=1, records=n,
                      fields=("title",))


def test_reference_split_is_items_0_500_and_500_550():
    plan = plan_split(ref(1000), SplitConfig())
    assert slice_indices(plan.train) == range(0, 500)
    assert slice_indices(plan.validation) == range(500, 550)


def test_offsets():
    plan = plan_split(ref(100), SplitConfig(train_size=10, validation_size=10, train_offset=20, validation_offset=0))
    assert list(slice_indices(plan.train)) == list(range(20, 30))
    assert list(slice_indices(plan.validation)) == list(range(0, 10))


def test_seeded_shuffle_is_deterministic_and_disjoint():
    config = SplitConfig(train_size=60, validation_size=40, shuffle=True, seed=7)
    a, b = plan_split(ref(100), config), plan_split(ref(100), config)
    train, val = list(slice_indices(a.train)), list(slice_indices(a.validation))
    assert train == list(slice_indices(b.train)) and val == list(slice_indices(b.validation))
    assert not set(train) & set(val) and len(set(train) | set(val)) == 100
    assert train != list(range(60))
    other = plan_split(ref(100), config.model_copy(update={"seed": 8}))
    assert list(slice_indices(other.train)) != train


def test_separate_validation_dataset_starts_at_zero():
    plan = plan_split(ref(500), SplitConfig(train_size=500, validation_size=50), ref(60, "b" * 64))
    assert plan.validation.dataset.sha256 == "b" * 64
    assert slice_indices(plan.validation) == range(0, 50)


def test_zero_validation_size_means_no_validation_file():
    assert plan_split(ref(10), SplitConfig(train_size=10, validation_size=0)).validation is None


@pytest.mark.parametrize(
    "n, config, message",
    [
        (100, dict(train_size=500, validation_size=0),
         r"training needs records 0\.\.499 but .* has 100; lower split\.train_size \(--train-size\)"),
        (520, dict(train_size=480, validation_size=50, validation_offset=480),
         r"validation needs records 480\.\.529 but .* has 520; lower split\.validation_size \(--validation-size\)"),
        (520, dict(), r"training and validation need records 0\.\.549 \(500 \+ 50\) but .* has 520; "),
        (100, dict(train_size=50, validation_size=10, validation_offset=45), "overlap training records 0..49"),
    ],
)
def test_requests_larger_than_data_or_overlapping(n, config, message):
    with pytest.raises(InputError, match=message):
        plan_split(ref(n), SplitConfig(**config))


_WAYS_OUT = [  # what the error tells the user to do, as the SplitConfig fields it changes
    (r"lower split\.train_size \(--train-size\) to at most ([\d,]+)$", lambda n: {"train_size": n}),
    (r"lower split\.validation_size \(--validation-size\) to at most ([\d,]+)$", lambda n: {"validation_size": n}),
    (r"set split\.validation_size \(--validation-size\) to 0 \(no validation file\)$", lambda: {"validation_size": 0}),
    (r"set split\.train_size \(--train-size\) to at most ([\d,]+) and split\.validation_size "
     r"\(--validation-size\) to 0$", lambda n: {"train_size": n, "validation_size": 0}),
]


@pytest.mark.parametrize("n, config", [
    (600, dict(train_size=1000)),  # training alone is too big: lowering it to 600 would only move the error
    (600, dict(train_size=560)),
    (600, dict(train_size=590, train_offset=5)),
    (520, dict()),
    (20, dict()),
    (100, dict(train_size=500)),
])
def test_each_way_out_a_too_large_split_names_works_on_its_own(n, config):
    """Validation follows training in one dataset: both sizes are checked together, and every fix the line names
    (a list of alternatives) gives a split that fits."""
    with pytest.raises(InputError) as refused:
        plan_split(ref(n), SplitConfig(**config))
    message = str(refused.value)
    assert "\n" not in message and f"has {n:,}; " in message
    ways = message.split("; ", 1)[1].split("; or ")
    assert ways
    for way in ways:
        matched = [(m, change) for pattern, change in _WAYS_OUT if (m := re.match(pattern, way))]
        assert len(matched) == 1, way
        m, change = matched[0]
        fixed = dict(config, **change(*(int(g.replace(",", "")) for g in m.groups())))
        plan = plan_split(ref(n), SplitConfig(**fixed))  # raises if this way out does not work
        assert plan.train.start + plan.train.count <= n
        assert plan.validation is None or plan.validation.start + plan.validation.count <= n


@pytest.mark.parametrize("field, value", [("train_size", 0), ("train_size", 9), ("validation_size", -1)])
def test_sizes_outside_the_schema_are_refused_by_the_model(field, value):
    # changed on purpose (issue 12): the constraints are in the parameter schema, so the UI's form refuses them
    with pytest.raises(ValidationError, match=field):
        SplitConfig(**{field: value})
    schema = SplitConfig.model_json_schema()["properties"]
    assert schema["train_size"]["minimum"] == MIN_EXAMPLES and schema["validation_size"]["minimum"] == 0


@pytest.mark.parametrize("value", [1, 9])
def test_a_validation_file_too_small_for_openai_is_refused_in_both_terms(value):
    with pytest.raises(InputError, match=rf"split.validation_size \(--validation-size\) is {value}: .* at least 10"):
        SplitConfig(validation_size=value)


def test_separate_datasets_that_share_records_are_refused(tmp_path):
    import json

    from tasks.load import describe, new_store
    from tasks.split import check_disjoint

    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text("".join(json.dumps({"title": f"t{i}", "price": i}) + "\n" for i in range(30)))
    val.write_text("".join(json.dumps({"price": i, "title": f"t{i}"}) + "\n" for i in (100, 101, 7, *range(102, 109))))
    store = new_store()
    records_for = lambda ref: store.read(ref.path, ref.sha256)  # noqa: E731
    plan = plan_split(describe(train, store)[0], SplitConfig(train_size=30, validation_size=10),
                      describe(val, store)[0])
    with pytest.raises(InputError, match=r"val.jsonl shares 1 record with the training records of .*train.jsonl "
                                         r"\(e.g. validation record 2 = training record 7\)"):
        check_disjoint(plan, records_for)
    ok = plan_split(describe(train, store)[0], SplitConfig(train_size=10, train_offset=10, validation_size=10),
                    describe(val, store)[0])
    check_disjoint(ok, records_for)  # record 7 is not among training records 10..19
