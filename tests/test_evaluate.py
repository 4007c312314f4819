"""Evaluation metrics on a small fixed set, checked by hand; the comparison table, prices and chart."""

from __future__ import annotations

import math
import struct

import pytest

from ftprep.errors import InputError
from ftprep.models import Answer, Comparison, EvalMetrics, Predictions
from ftprep.openai_models import inference_cost, inference_price
from tasks.evaluate import (
    baseline_metrics,
    is_hit,
    metrics,
    parse_price,
    pick,
    prompt_digest,
    prompt_messages,
    read_training,
    score,
)
from tasks.evaluation_report import comparison_chart, render_markdown, render_text, table_rows
from tasks.format import PRESETS


@pytest.mark.parametrize("reply, price", [("Price is $1,299.99", 1299.99), ("$5", 5.0), ("about 12.5 dollars", 12.5),
                                          ("I don't know", None), ("", None), (None, None)])
def test_parse_price(reply, price):
    assert parse_price(reply) == price


def test_metrics_by_hand():
    truths = [100.0, 50.0, 10.0, 300.0]
    estimates = [110.0, None, 55.0, 200.0]  # errors: 10, 50 (unparsed = $0), 45, 100
    m = metrics("ft:model", truths, estimates)
    assert m.items == 4 and m.unparsed == 1
    assert m.mae == pytest.approx((10 + 50 + 45 + 100) / 4)  # 51.25
    # log errors: ln(101/111), ln(51/1), ln(11/56), ln(301/201)
    expected = math.sqrt((math.log(101 / 111) ** 2 + math.log(51) ** 2 + math.log(11 / 56) ** 2
                          + math.log(301 / 201) ** 2) / 4)
    assert m.rmsle == pytest.approx(expected)
    # hits: 10 < 40 yes; 50 not < 40 and 50/50 = 100% no; 45 and 450% no; 100 but 33% no -> 1 of 4
    assert m.hit_rate == 0.25
    assert is_hit(300.0, 250.0) and not is_hit(300.0, 240.0)  # 50 < 20% of 300 = 60; 60 is not < 60


def test_score_leaves_failed_items_out_and_adds_usage_cost_and_latency():
    truths = [100.0, 50.0, 10.0]
    answers = (Answer(text="Price is $110", latency_seconds=0.3, prompt_tokens=100, completion_tokens=5), None,
               Answer(text="no idea", latency_seconds=0.1, prompt_tokens=50, completion_tokens=3))
    row = score(truths, Predictions(model="gpt-4o-mini-2024-07-18", answers=answers,
                                    errors=(None, "item 1: refused: HTTP 400", None)))
    assert (row.items, row.failed, row.unparsed) == (2, 1, 1)
    assert row.mae == pytest.approx((10 + 10) / 2)  # item 1 left out; "no idea" counts as $0 against $10
    assert (row.prompt_tokens, row.completion_tokens) == (150, 8)
    assert row.cost_usd == pytest.approx((150 * 0.15 + 8 * 0.60) / 1e6)
    assert row.median_latency_seconds == pytest.approx(0.2) and row.error == "item 1: refused: HTTP 400"
    # a model refused as a whole: no metrics, the server's message, no crash
    refused = score(truths, Predictions(model="gpt-nope", answers=(None,) * 3, errors=("404 nope",) * 3,
                                        refused="HTTP 404: The model `gpt-nope` does not exist"))
    assert (refused.items, refused.failed, refused.mae, refused.cost_usd) == (0, 3, None, None)
    assert refused.error == "HTTP 404: The model `gpt-nope` does not exist"


def test_inference_prices_are_dated_and_fine_tuned_models_priced_at_their_base():
    assert inference_price("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert inference_price("gpt-4o-mini") == (0.15, 0.60)  # the undated alias
    assert inference_price("ft:gpt-4o-mini-2024-07-18:org:pricer:abc123") == (0.30, 1.20)
    assert inference_price("my-local-llama") is None and inference_cost("my-local-llama", 10, 10) is None
    assert inference_price("ft:unknown-base:org::x") is None


def test_baseline_is_the_training_mean(tmp_path):
    lines = [{"messages": [{"role": "user", "content": "a 3-pack"}, {"role": "assistant", "content": f"Price is ${p}"}]}
             for p in ("10.00", "1,000.00", "40")]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(__import__("json").dumps(x) for x in lines) + "\n")
    mean, count, prompts = read_training(path)
    assert (mean, count) == (pytest.approx(350.0), 3)
    assert prompts == {prompt_digest([{"role": "user", "content": "a 3-pack"}])}
    row = baseline_metrics("baseline", 350.0, [300.0, 100.0])
    assert row.kind == "baseline" and row.mae == pytest.approx((50 + 250) / 2) and row.hit_rate == 0.5


def _comparison() -> Comparison:
    rows = (EvalMetrics(model="ft:gpt-4o-mini-2024-07-18:o:p:x", items=3, mae=10.0, rmsle=0.2, hit_rate=0.9,
                        prompt_tokens=300, completion_tokens=15, cost_usd=0.0001, median_latency_seconds=0.5),
            EvalMetrics(model="gpt-4o-mini-2024-07-18", items=3, mae=30.0, rmsle=0.5, hit_rate=0.6,
                        prompt_tokens=300, completion_tokens=15, cost_usd=0.00006, median_latency_seconds=0.4),
            EvalMetrics(model="gpt-nope", items=0, failed=3, error="HTTP 404: does not exist"),
            EvalMetrics(model="baseline: training mean", kind="baseline", items=3, mae=80.0, rmsle=1.0, hit_rate=0.3))
    return Comparison(data="test.pkl", items=3, rows=rows, baseline="baseline: ...", prices_as_of="2025-06-01")


def test_table_marks_the_best_value_of_each_column():
    rows = table_rows(_comparison())
    assert [r["MAE"] for r in rows] == ["$10.00 ★", "$30.00", "—", "$80.00"]
    assert [r["hit rate"] for r in rows] == ["90.0% ★", "60.0%", "—", "30.0%"]
    assert [r["cost"] for r in rows] == ["$0.0001", "$0.000060 ★", "—", "—"]  # the baseline does not compete
    assert [r["median latency"] for r in rows] == ["0.50 s", "0.40 s ★", "—", "—"]
    assert rows[2]["note"] == "HTTP 404: does not exist" and rows[3]["note"] == "no API call"
    assert render_markdown(_comparison()).count("\n") == 5
    assert "gpt-nope: HTTP 404: does not exist" in render_text(_comparison())


def test_comparison_chart_is_a_png(tmp_path):
    comparison = _comparison()
    panels = [("ft", [10.0, 200.0, 50.0], [12.0, None, 150.0]), ("base", [10.0, 200.0, 50.0], [30.0, 100.0, 60.0]),
              ("baseline", [10.0, 200.0, 50.0], [80.0] * 3)]
    path = comparison_chart(tmp_path / "comparison.png", comparison.rows, panels, "3 items; stub")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1350, 720)  # bars beside a 2 x 2 grid of scatter plots


def test_prompt_messages_are_the_training_messages_without_the_answer():
    record = {"prompt": "How much does this cost to the nearest dollar?\n\nKettle\n\nPrice is $20.00", "price": 19.5}
    messages = prompt_messages(PRESETS["course"], record, 0)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "How much does this cost?\n\nKettle"


def test_pick_first_or_seeded():
    assert pick(10, 3, None) == [0, 1, 2]
    assert pick(100, 5, 7) == pick(100, 5, 7) != pick(100, 5, 8)
    with pytest.raises(InputError, match="--n is 20 but the test data has 10"):
        pick(10, 20, None)
