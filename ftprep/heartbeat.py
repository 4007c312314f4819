"""Flow-run heartbeats that end with the flow: Prefect's heartbeat event, from a thread that nothing waits for.

Prefect (3.9) sends a ``prefect.flow-run.heartbeat`` event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds
(180) while a flow runs, so an automation can mark a run whose process died as crashed. Its thread sleeps in whole
seconds and a sync flow joins it when the flow function returns: every run ends with a wait of up to 1 s, about
0.7 s for the everyday 500/50 prepare (measured: an empty flow takes 1.15 s with it, 0.18 s without).

For the flows the ``ftprep`` command runs in its own process, :func:`ours` turns Prefect's thread off and
:func:`beating` (entered by every ftprep flow, :func:`ftprep.steps.flow`) sends the same event, with the same
resource and related resources, at the same frequency, from a thread that waits on an event and so stops at once.
Runs started any other way (a worker, ``serve``, a test calling a flow) keep Prefect's own heartbeats unchanged.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_SECONDS: ContextVar[float | None] = ContextVar("ftprep_heartbeat_seconds", default=None)


@contextmanager
def ours() -> Iterator[None]:
    """Around flows called in this process: Prefect's heartbeat thread off, ftprep's (:func:`beating`) on, at
    Prefect's configured frequency. Heartbeats turned off in Prefect's settings stay off."""
    from prefect.context import SettingsContext, get_settings_context

    context = get_settings_context()
    settings = context.settings
    seconds = settings.flows.heartbeat_frequency
    if seconds is None:
        yield
        return
    # what temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}) makes, by copying the two models instead
    # of validating all of Prefect's settings again (25 ms, on every command's way to its flow)
    quiet = settings.model_copy(update={"flows": settings.flows.model_copy(update={"heartbeat_frequency": None})})
    token = _SECONDS.set(float(seconds))
    try:
        with SettingsContext(profile=context.profile, settings=quiet):
            yield
    finally:
        _SECONDS.reset(token)


def _event_parts(flow_run: Any, flow_name: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The heartbeat's resource and related resources, as Prefect's flow engine builds them."""
    from prefect import __version__

    resource = {"prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                "prefect.resource.name": flow_run.name or "", "prefect.version": __version__}
    related: list[Any] = []
    if flow_run.flow_id:
        related.append({"prefect.resource.id": f"prefect.flow.{flow_run.flow_id}", "prefect.resource.role": "flow",
                        "prefect.resource.name": flow_name})
    if flow_run.deployment_id:
        related.append({"prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                        "prefect.resource.role": "deployment"})
    related += [{"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
                for tag in sorted(set(flow_run.tags or []))]
    return resource, related


@contextmanager
def beating() -> Iterator[None]:
    """Inside a flow run under :func:`ours`: its heartbeat now and every N seconds until the block ends; the thread
    stops when it does (nothing joins it). Anywhere else: nothing."""
    seconds = _SECONDS.get()
    if seconds is None:
        yield
        return
    from prefect.context import FlowRunContext
    from prefect.events import emit_event

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        yield
        return
    resource, related = _event_parts(context.flow_run, context.flow.name if context.flow else "")
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                emit_event(event="prefect.flow-run.heartbeat", resource=resource, related=related)
            except Exception:  # noqa: BLE001 - as Prefect's: a missed heartbeat never fails the run
                pass
            stop.wait(seconds)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,), daemon=True,
                              name="ftprep-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
