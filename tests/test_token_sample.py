"""Token statistics from a deterministic sample: close to the exact count, the limit still checked on every line."""

from __future__ import annotations

import json
import random

from tasks.token_stats import SAMPLE
from tasks.validate import validate_files

WORDS = "kettle brass hinge cordless drill socket wrench garden hose nozzle ceramic mug lamp shade cable".split()


def make_file(path, n: int, long_line: int | None = None) -> None:
    rng = random.Random(7)
    with open(path, "w") as f:
        for i in range(n):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 120)))
            user = "z " * 70_000 if i == long_line else f"How much is item {i}? {words}"
            f.write(json.dumps({"messages": [{"role": "system", "content": "You estimate prices."},
                                             {"role": "user", "content": user},
                                             {"role": "assistant", "content": f"Price is ${i % 997}.00"}]}) + "\n")


def test_the_sampled_total_matches_the_exact_total_within_its_interval(tmp_path):
    path = tmp_path / "big.jsonl"
    make_file(path, 2 * SAMPLE + 5_000)
    sampled = validate_files([(path, "train")], workers=1).files[0].tokens
    exact = validate_files([(path, "train")], workers=1, exact_tokens=True).files[0].tokens
    assert exact.sampled is None and sampled.sampled is not None
    assert 0.8 * SAMPLE < sampled.sampled < 1.2 * SAMPLE
    assert abs(sampled.total - exact.total) <= sampled.total_ci95  # the 95% interval holds here
    assert abs(sampled.total - exact.total) / exact.total < 0.01 and sampled.total_ci95 / exact.total < 0.01
    again = validate_files([(path, "train")], workers=1).files[0].tokens
    assert again == sampled  # deterministic: the same file gives the same sample


def test_a_small_file_is_counted_exactly_and_the_limit_is_checked_on_every_line(tmp_path):
    small = tmp_path / "small.jsonl"
    make_file(small, 500)
    assert validate_files([(small, "train")], workers=1).files[0].tokens.sampled is None
    big = tmp_path / "big.jsonl"
    make_file(big, 3 * SAMPLE, long_line=12_345)
    report = validate_files([(big, "train")], workers=1)
    assert report.files[0].tokens.sampled is not None
    too_long = [f for f in report.findings if f.code == "too_many_tokens"]
    assert too_long and too_long[0].lines == (12_346,)
