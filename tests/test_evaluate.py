"""Evaluation metrics on a small fixed set, checked by hand; the chart is a real PNG."""

from __future__ import annotations

import math
import struct

import pytest

from ftprep.errors import InputError
from tasks.evaluate import is_hit, metrics, parse_price, pick, prompt_messages, scatter_chart
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


def test_chart_is_a_png(tmp_path):
    path = scatter_chart(tmp_path / "chart.png", [10.0, 200.0, 50.0], [12.0, None, 150.0], "test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (800, 600)


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
