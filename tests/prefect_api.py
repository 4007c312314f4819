"""Read what a finished flow run left on the Prefect server, once all of it has arrived.

When a flow called in this process returns, the server does not yet hold everything about it: the run's logs
wait in the client's log worker (sent in batches, every 2 s by default), and task runs, their states and the
events reach the server as events that its services record in the background. A test that reads the server
right after a flow returns sees whatever happened to arrive by then. :func:`settle` waits on conditions
(everything sent, then everything recorded) instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import Log, TaskRun
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

T = TypeVar("T")
PAGE = 200


@contextmanager
def client_of(api_url: str) -> Iterator[Any]:
    """A sync client of the server at ``api_url`` (another than the session's), for this block only.

    Prefect's event and log workers are per process and connect to the API URL current when they start. Anything
    done here that emits an event (loading a block emits one) starts them on this server; once it stops, they would
    keep sending the session's later flow events to a dead address and those task runs would never be recorded.
    So they are drained on the way out, and the next event starts them on the session's server again.
    """
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            yield client
    finally:
        APILogWorker.drain_all(timeout=60)
        EventsWorker.drain_all(timeout=60)


def read_all(read: Callable[[int, int], list[T]]) -> list[T]:
    """Every item of a paged API read, ``read(limit, offset)``, not only the first page."""
    items: list[T] = []
    while True:
        page = read(PAGE, len(items))
        items += page
        if len(page) < PAGE:
            return items


def run_logs(client: Any, flow_run_id: UUID) -> list[Log]:
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    return read_all(lambda limit, offset: client.read_logs(log_filter, limit=limit, offset=offset))


def run_task_runs(client: Any, flow_run_id: UUID) -> list[TaskRun]:
    flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    return read_all(lambda limit, offset: client.read_task_runs(flow_run_filter=flow_runs, limit=limit,
                                                                offset=offset))


def events_of(client: Any, resource_id: str, name: str) -> list[dict[str, Any]]:
    """The events called ``name`` about ``resource_id`` that the server has stored (up to 50)."""
    event_filter = EventFilter(resource=EventResourceFilter(id=[resource_id]), event=EventNameFilter(name=[name]))
    response = client.request("POST", "/events/filter", json={"filter": event_filter.model_dump(mode="json"),
                                                             "limit": 50})
    return list(response.json()["events"])


def _events_recorded(client: Any, names_by_resource: dict[str, str]) -> set[str]:
    """The resources of ``names_by_resource`` (resource id -> event name) whose event the server has stored."""
    found: set[str] = set()
    ids = list(names_by_resource)
    for start in range(0, len(ids), 50):
        chunk = ids[start:start + 50]
        event_filter = EventFilter(resource=EventResourceFilter(id=chunk),
                                   event=EventNameFilter(name=sorted({names_by_resource[i] for i in chunk})))
        response = client.request("POST", "/events/filter",
                                  json={"filter": event_filter.model_dump(mode="json"), "limit": 50})
        page = response.json()
        events = list(page["events"])
        while page.get("next_page") and len(events) < page["total"]:
            page = client._client.get(page["next_page"]).json()
            events += page["events"]
        found |= {e["resource"]["prefect.resource.id"] for e in events
                  if names_by_resource.get(e["resource"]["prefect.resource.id"]) == e["event"]}
    return found


def _missing(client: Any, flow_run_ids: Iterable[UUID]) -> list[str]:
    missing: list[str] = []
    for run_id in flow_run_ids:
        run = client.read_flow_run(run_id)
        if not run.state or not run.state.is_final():
            missing.append(f"flow run {run_id} is not finished ({run.state})")
            continue
        logs = run_logs(client, run_id)
        # (a failed run's "Finished in state Failed(...)" repeats its one-line error, which ftprep's log filter
        # keeps once: only a completed run's final line is waited for)
        if run.state.is_completed() and not any(
                log.task_run_id is None and log.message.startswith("Finished in state") for log in logs):
            missing.append(f"flow run {run_id}: its 'Finished in state' log")
        task_runs = {t.id: t for t in run_task_runs(client, run_id)}
        for task_run_id in {log.task_run_id for log in logs if log.task_run_id} - set(task_runs):
            missing.append(f"task run {task_run_id} (it logged, the server has no record of it)")
        final_events = {f"prefect.flow-run.{run_id}": f"prefect.flow-run.{run.state.name}"}
        for t in task_runs.values():
            states = client.read_task_run_states(t.id)
            if not t.state or not t.state.is_final() or not states or states[-1].id != t.state.id:
                missing.append(f"task run {t.name}: its final state")
            else:
                final_events[f"prefect.task-run.{t.id}"] = f"prefect.task-run.{t.state.name}"
        for resource in set(final_events) - _events_recorded(client, final_events):
            missing.append(f"event {final_events[resource]} of {resource}")
    return missing


def settle(client: Any, flow_run_ids: Iterable[UUID], timeout: float = 60, here: bool = True) -> None:
    """Return once the server holds everything about these finished flow runs: all their logs, every task run
    with its final state, and the final-state events of the runs. ``here``: the runs ran in this process, whose
    log and event workers are drained first (False for runs of a worker or another command)."""
    flow_run_ids = list(flow_run_ids)
    if here:
        APILogWorker.drain_all(timeout=timeout)  # blocks until the log worker has sent every log made so far
        EventsWorker.drain_all(timeout=timeout)  # blocks until every event made so far is sent
    deadline = time.monotonic() + timeout
    while missing := _missing(client, flow_run_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Prefect server did not record within {timeout:.0f} s: {'; '.join(missing)}")
        time.sleep(0.1)
