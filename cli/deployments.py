"""The deployments in ``prefect.yaml``, for ``ftprep serve`` (Prefect's ``serve``, no worker needed).

``prefect deploy --all`` reads the same file for a work pool and a worker, so the deployments are
defined once, in ``prefect.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ftprep.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def read_deployments(path: Path = ROOT / "prefect.yaml") -> list[dict[str, Any]]:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"{path} cannot be read ({type(e).__name__}); restore it from the repository") from None
    return list((config or {}).get("deployments") or [])


def runner_deployments(path: Path = ROOT / "prefect.yaml", names: list[str] | None = None):
    """Each deployment of ``prefect.yaml`` as a runner deployment of its flow (same name, parameters, schedule)."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    result = []
    for spec in read_deployments(path):
        if names and spec["name"] not in names:
            continue
        flow = load_flow_from_entrypoint(str(ROOT / spec["entrypoint"]))
        schedules = [Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
                     for s in spec.get("schedules") or [] if "cron" in s]
        result.append(flow.to_deployment(name=spec["name"], description=spec.get("description"),
                                         parameters=spec.get("parameters") or {}, schedules=schedules))
    if names and len(result) != len(names):
        known = ", ".join(s["name"] for s in read_deployments(path))
        raise InputError(f"no deployment named {', '.join(names)} in {path}; known: {known}")
    return result


def refuse_pool_deployments(deployments: list[Any]) -> None:
    """Serving replaces a deployment of the same name on the server: one that ``prefect deploy`` made for a work
    pool would lose its code's location, and its worker's runs (the schedule's too) would crash, even after
    ``serve`` stops. Refuse, in one line, before anything is changed."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for d in deployments:
            try:
                existing = client.read_deployment_by_name(f"{d.flow_name}/{d.name}")
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                raise InputError(
                    f"deployment {d.flow_name}/{d.name} on this server runs on work pool {existing.work_pool_name!r} "
                    "(prefect deploy); serving it would replace it and break its worker's runs: run the worker "
                    f"instead, or delete it first (prefect deployment delete {d.flow_name}/{d.name})")
