"""Rate limits across runs: OpenAI requests take a slot of one Prefect global concurrency limit."""

from __future__ import annotations

import threading
import time

import pytest
from prefect import get_client

from ftprep.limits import slot
from ftprep.names import OPENAI_CONCURRENCY_LIMIT, OPENAI_RATE_LIMIT
from ftprep.remote import RemotePolicy

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_requests_in_flight_never_exceed_the_shared_limit():
    policy = RemotePolicy(concurrency=2, rpm=600)
    in_flight, peak, lock, paired = [0], [0], threading.Lock(), threading.Event()

    def request() -> None:
        with slot(policy):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
                if in_flight[0] >= 2:
                    paired.set()
            paired.wait(5)  # held until two are in at once (however slowly a loaded machine lets the second in)
            time.sleep(0.1)
            with lock:
                in_flight[0] -= 1

    threads = [threading.Thread(target=request) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert peak[0] == 2
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(OPENAI_CONCURRENCY_LIMIT)
        assert limit.limit == 2 and limit.active_slots == 0  # every slot given back
        rate = client.read_global_concurrency_limit_by_name(OPENAI_RATE_LIMIT)
        assert rate.limit == 600 and rate.slot_decay_per_second == 10.0


def test_no_limit_configured_takes_no_slot():
    policy = RemotePolicy()
    started = time.perf_counter()
    for _ in range(100):
        with slot(policy):
            pass
    assert time.perf_counter() - started < 0.25  # no round trip to the server at all
