"""Split: decide which records become training and which validation examples.

Pure part: :func:`plan_split` turns a :class:`SplitConfig` into a :class:`SplitPlan` of two slices (no
data is copied); :func:`slice_indices` says which record positions a slice covers. Training and
validation from one dataset are disjoint ranges of the same order, so they never share a record.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache

import orjson
from prefect import get_run_logger

from ftprep.errors import InputError
from ftprep.models import DatasetRef, Slice, SplitConfig, SplitPlan
from ftprep.openai_models import MIN_EXAMPLES
from ftprep.records import Record, RecordStore, take
from ftprep.steps import task
from tasks import PIPELINE_CACHE


def _check_fits(name: str, option: str, start: int, count: int, ref: DatasetRef) -> None:
    if ref.records < MIN_EXAMPLES:
        raise InputError(f"{ref.path} has only {ref.records:,} record(s); OpenAI needs at least {MIN_EXAMPLES} "
                         "training examples: give a dataset with more records")
    if start + count > ref.records:
        raise InputError(
            f"{name} needs records {start}..{start + count - 1} but {ref.path} has {ref.records:,}; "
            f"lower {option} (or its offset) to at most {max(ref.records - start, 0):,}"
        )


TRAIN_SIZE, VALIDATION_SIZE = "split.train_size (--train-size)", "split.validation_size (--validation-size)"


def _check_pair_fits(config: SplitConfig, ref: DatasetRef) -> None:
    """Validation right after training in one dataset: both sizes are checked together, and each way out named
    is enough on its own (lowering the training size alone to what the dataset holds would only move the error
    to the validation records)."""
    offset, train, validation, records = config.train_offset, config.train_size, config.validation_size, ref.records
    if offset + train + validation <= records:
        return
    fixes, room, left = [], records - offset - validation, records - offset - train
    if room >= MIN_EXAMPLES:
        fixes.append(f"lower {TRAIN_SIZE} to at most {room:,}")
    if left >= MIN_EXAMPLES:
        fixes.append(f"lower {VALIDATION_SIZE} to at most {left:,}")
    if left >= 0:
        fixes.append(f"set {VALIDATION_SIZE} to 0 (no validation file)")
    elif records - offset >= MIN_EXAMPLES:
        fixes.append(f"set {TRAIN_SIZE} to at most {records - offset:,} and {VALIDATION_SIZE} to 0")
    else:
        fixes.append("lower split.train_offset (--train-offset)")
    raise InputError(f"training and validation need records {offset}..{offset + train + validation - 1} "
                     f"({train:,} + {validation:,}) but {ref.path} has {records:,}; {'; or '.join(fixes)}")


def plan_split(data: DatasetRef, config: SplitConfig, validation_data: DatasetRef | None = None) -> SplitPlan:
    seed = config.seed if config.shuffle else None
    if config.validation_size and config.validation_offset is None and \
            (validation_data is None or validation_data.sha256 == data.sha256):
        _check_fits("training", TRAIN_SIZE, config.train_offset, 0, data)  # too few records for any training
        _check_pair_fits(config, data)
    _check_fits("training", TRAIN_SIZE, config.train_offset, config.train_size, data)
    train = Slice(dataset=data, start=config.train_offset, count=config.train_size, seed=seed)
    if config.validation_size == 0:
        return SplitPlan(train=train, validation=None)

    if validation_data is not None and validation_data.sha256 != data.sha256:
        source, start = validation_data, config.validation_offset or 0
    else:
        source = data
        start = config.validation_offset
        if start is None:
            start = config.train_offset + config.train_size
        t0, t1 = train.start, train.start + train.count
        if start < t1 and t0 < start + config.validation_size:
            raise InputError(
                f"validation records {start}..{start + config.validation_size - 1} overlap training records "
                f"{t0}..{t1 - 1}; move split.validation_offset (--validation-offset) past {t1 - 1} or shrink the sizes"
            )
    _check_fits("validation", VALIDATION_SIZE, start, config.validation_size, source)
    return SplitPlan(train=train, validation=Slice(dataset=source, start=start, count=config.validation_size,
                                                    seed=seed))


def _record_key(record) -> bytes:
    return hashlib.blake2b(orjson.dumps(record, option=orjson.OPT_SORT_KEYS, default=str), digest_size=16).digest()


def check_disjoint(plan: SplitPlan, records_for: Callable[[DatasetRef], Sequence[Record]]) -> None:
    """Separate training and validation datasets must not share a selected record."""
    v = plan.validation
    if v is None or v.dataset.sha256 == plan.train.dataset.sha256:
        return  # one dataset: disjoint ranges of one order, checked in plan_split
    seen = {_record_key(r): i for i, r in _selected(records_for(plan.train.dataset), slice_indices(plan.train))}
    shared = [(i, seen[k]) for i, r in _selected(records_for(v.dataset), slice_indices(v))
              if (k := _record_key(r)) in seen]
    if shared:
        (vi, ti), n = shared[0], len(shared)
        raise InputError(
            f"{v.dataset.path} shares {n} record{'s' if n > 1 else ''} with the training records of "
            f"{plan.train.dataset.path} (e.g. validation record {vi} = training record {ti}); remove them from "
            "one dataset so validation stays unseen"
        )


def _selected(records: Sequence[Record], indices: Sequence[int], chunk: int = 2000) -> Iterator[tuple[int, Record]]:
    """(position, record) for each of ``indices``, a chunk at a time (a file-backed dataset reads a chunk at once)."""
    for start in range(0, len(indices), chunk):
        part = indices[start : start + chunk]
        batch = take(records, part)
        for i in part:
            yield i, batch[i]


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int) -> tuple[int, ...]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return tuple(order)


def slice_indices(s: Slice) -> range | tuple[int, ...]:
    """Record positions of a slice, in output order."""
    if s.seed is None:
        return range(s.start, s.start + s.count)
    return _permutation(s.dataset.records, s.seed)[s.start : s.start + s.count]


@task(name="split", cache_policy=PIPELINE_CACHE, persist_result=True)
def split_dataset(data: DatasetRef, config: SplitConfig, validation_data: DatasetRef | None,
                  store: RecordStore) -> SplitPlan:
    """Plan training and validation slices (positions only; no records are copied)."""
    plan = plan_split(data, config, validation_data)
    check_disjoint(plan, lambda ref: store.read(ref.path, ref.sha256))
    v = plan.validation
    get_run_logger().info(
        "Split: training = %s records from position %s of %s; validation = %s%s",
        f"{plan.train.count:,}", plan.train.start, plan.train.dataset.path,
        f"{v.count:,} records from position {v.start} of {v.dataset.path}" if v else "none",
        f" (shuffled with seed {plan.train.seed})" if plan.train.seed is not None else " (file order)",
    )
    return plan
