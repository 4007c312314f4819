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


def heartbeats(run_ids: list[str], timeout: float = 30.0) -> dict[str, list[dict]]:
    """Each run's heartbeat events, once the server has stored at least one for every run of ``run_ids`` (it
    records them in the background), or what it has after ``timeout``."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            found = {i: events_of(client, f"prefect.flow-run.{i}", HEARTBEAT) for i in run_ids}
            if all(found.values()) or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


def test_runs_under_ours_send_one_heartbeat_of_their_own_and_other_runs_keep_prefects(prefect_server):
    from prefect.settings import temporary_settings

    configured = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value()
    with heartbeat.ours():
        ours = probe()
        threads = [t for t in threading.enumerate() if t.name == "ftprep-heartbeat"]
    assert get_current_settings().flows.heartbeat_frequency == configured  # Prefect's setting is back
    theirs = probe()  # not under ours: Prefect's own heartbeat thread
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), heartbeat.ours():
        off = probe()  # heartbeats turned off in Prefect's settings stay off

    # under ours, Prefect's own thread was off for the run and ftprep's was beating; elsewhere only Prefect's
    assert (ours["prefect_frequency"], ours["ours"]) == (None, 1)
    assert (theirs["prefect_frequency"], theirs["ours"]) == (configured, 0)
    assert (off["prefect_frequency"], off["ours"]) == (None, 0)
    for t in threads:  # it waits on an event, so it ended with the flow: nothing had to join it
        t.join(timeout=1.0)
        assert not t.is_alive()

    heartbeats([ours["id"], theirs["id"]])
    time.sleep(1.0)  # a second heartbeat of a run (Prefect's and ours both sent) would be stored by now
    events = heartbeats([ours["id"], theirs["id"], off["id"]], timeout=1.0)
    assert len(events[ours["id"]]) == 1 and len(events[theirs["id"]]) == 1, events
    assert events[off["id"]] == []
    mine, prefects = events[ours["id"]][0], events[theirs["id"]][0]
    assert mine["resource"]["prefect.resource.id"] == f"prefect.flow-run.{ours['id']}"
    # the same event as Prefect's: the same kinds of resource and related resources
    assert set(mine["resource"]) == set(prefects["resource"])
    assert [(r["prefect.resource.role"], r.get("prefect.resource.name")) for r in mine["related"]] == \
        [(r["prefect.resource.role"], r.get("prefect.resource.name")) for r in prefects["related"]]


def test_the_prepare_command_runs_with_ftprep_heartbeats(ftprep_main, sample_pickle):  # noqa: F811
    proc = ftprep_main(["prepare", "--data", str(sample_pickle), "--train-size", "20", "--validation-size", "10",
                        "--no-upload", "--out", "out"])
    assert proc.returncode == 0, proc.stderr
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort="START_TIME_DESC", limit=1)
    (events,) = heartbeats([str(runs[0].id)]).values()
    assert len(events) == 1 and events[0]["resource"]["prefect.resource.id"] == f"prefect.flow-run.{runs[0].id}"
    assert not [t for t in threading.enumerate() if t.name == "ftprep-heartbeat" and t.is_alive()]
