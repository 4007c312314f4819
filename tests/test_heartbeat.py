"""Flow-run heartbeats: the command's runs send Prefect's heartbeat event themselves and end without waiting for it."""

from __future__ import annotations

import threading
import time

from prefect import get_client
from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings

from ftprep import heartbeat
from ftprep.steps import flow
from tests.prefect_api import events_of
from tests.test_cli import ftprep_main  # noqa: F401 - the fixture

HEARTBEAT = "prefect.flow-run.heartbeat"


@flow(name="heartbeat-probe", persist_result=False)
def probe() -> dict:
    """What a flow run sees of the heartbeats while it runs."""
    beating = [t for t in threading.enumerate() if t.name == "ftprep-heartbeat" and t.is_alive()]
    return {"id": str(flow_run.id), "prefect_frequency": get_current_settings().flows.heartbeat_frequency,
            "ours": len(beating), "tags": sorted(flow_run.tags)}


def heartbeats(run_id: str, at_least: int = 1, timeout: float = 30.0) -> list[dict]:
    """The run's heartbeat events, once the server has stored ``at_least`` of them (it records them in the
    background), or what it has after ``timeout``."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            found = events_of(client, f"prefect.flow-run.{run_id}", HEARTBEAT)
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


def test_a_run_under_ours_sends_one_heartbeat_of_its_own_and_its_thread_stops_with_the_flow(prefect_server):
    with heartbeat.ours():
        seen = probe()
        threads = [t for t in threading.enumerate() if t.name == "ftprep-heartbeat"]
    # Prefect's own thread was off for the run, ftprep's was beating
    assert seen["prefect_frequency"] is None and seen["ours"] == 1
    for t in threads:  # it waits on an event, so it ends at once: nothing had to join it
        t.join(timeout=1.0)
        assert not t.is_alive()
    heartbeats(seen["id"])  # stored
    time.sleep(1.0)  # a second heartbeat (Prefect's, had it run too) would be stored by now
    events = heartbeats(seen["id"])
    assert len(events) == 1, events
    related = {r["prefect.resource.role"]: r for r in events[0]["related"]}
    assert related["flow"]["prefect.resource.name"] == "heartbeat-probe"
    assert events[0]["resource"]["prefect.resource.id"] == f"prefect.flow-run.{seen['id']}"
    # and Prefect's setting is back as it was
    assert get_current_settings().flows.heartbeat_frequency == PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value()


def test_other_runs_keep_prefects_own_heartbeats(prefect_server):
    seen = probe()
    assert seen["prefect_frequency"] == PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() and seen["ours"] == 0
    assert len(heartbeats(seen["id"])) == 1  # Prefect's, sent as the run began


def test_heartbeats_turned_off_in_prefects_settings_stay_off(prefect_server):
    from prefect.settings import temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), heartbeat.ours():
        seen = probe()
    assert seen["ours"] == 0
    assert heartbeats(seen["id"], timeout=2.0) == []


def test_the_prepare_command_runs_with_ftprep_heartbeats(ftprep_main, sample_pickle):  # noqa: F811
    proc = ftprep_main(["prepare", "--data", str(sample_pickle), "--train-size", "20", "--validation-size", "10",
                        "--no-upload", "--out", "out"])
    assert proc.returncode == 0, proc.stderr
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort="START_TIME_DESC", limit=1)
    events = heartbeats(str(runs[0].id))
    assert len(events) == 1 and events[0]["resource"]["prefect.resource.id"] == f"prefect.flow-run.{runs[0].id}"
    assert not [t for t in threading.enumerate() if t.name == "ftprep-heartbeat" and t.is_alive()]
