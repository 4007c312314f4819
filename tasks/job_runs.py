"""Which fine-tune flow runs follow which job, and what becomes of a job when its run stops early.

Each run records the job it follows in a Prefect Variable of its own (:func:`ftprep.names.run_job_variable`,
``ftprep-run-job-<flow run id>``), written as soon as the job is known and removed when the run ends. When a run
is cancelled (the flow's on_cancellation hook, which runs in the worker or runner after the run's process was
stopped) or interrupted with Ctrl-C, :func:`stop_job_of_run` cancels that run's job, unless another active run
follows the same job (one that reused it, or the one it was reused from): then it leaves the job running and
says so in one line. A run cancelled before it recorded its job is matched to the job through the job's
metadata, which names the flow run that created it.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from openai import OpenAI

from ftprep.models import FineTuneResult
from ftprep.names import RUN_JOB_PREFIX, run_job_variable
from ftprep.remote import describe_error
from tasks.finetune import ACTIVE, OWNER

_log = logging.getLogger("ftprep.jobs")
FOLLOW_AGAIN = "run ftprep fine-tune again with the same files and settings to follow it (it finds the job)"


def remember(flow_run_id: Any, result: FineTuneResult) -> None:
    """Record the job this flow run follows (read by :func:`stop_job_of_run` and by other runs)."""
    from prefect.variables import Variable

    Variable.set(run_job_variable(flow_run_id), {"job_id": result.job_id, "flow_run_id": str(flow_run_id),
                                                 "started_by": result.started_by, "reused": result.reused},
                 overwrite=True)


def forget(flow_run_id: Any) -> None:
    """Remove the run's record (when the run ends); a record that is already gone is fine."""
    from prefect.variables import Variable

    try:
        Variable.unset(run_job_variable(flow_run_id))
    except Exception as e:  # noqa: BLE001 - a leftover record is harmless: followers are checked for being active
        _log.debug("Could not remove the job record of flow run %s: %s", flow_run_id, e)


def recorded_job(flow_run_id: Any) -> str | None:
    from prefect.variables import Variable

    record = Variable.get(run_job_variable(flow_run_id))
    return record.get("job_id") if isinstance(record, dict) and isinstance(record.get("job_id"), str) else None


def other_followers(job_id: str, flow_run_id: Any) -> list[str]:
    """Other flow runs, still active (not final, not being cancelled), whose record names ``job_id``."""
    from prefect import get_client

    followers = []
    with get_client(sync_client=True) as client:
        for variable in client.read_variables():
            run = variable.name.removeprefix(RUN_JOB_PREFIX)
            if (run == variable.name or run == str(flow_run_id) or not isinstance(variable.value, dict)
                    or variable.value.get("job_id") != job_id):
                continue
            try:
                state = client.read_flow_run(UUID(run)).state
            except Exception:  # noqa: BLE001 - a record of a deleted run follows nothing
                continue
            if state is not None and not state.is_final() and not state.is_cancelling():
                followers.append(run)
    return followers


def jobs_started_by(client: OpenAI, flow_run_id: Any) -> list[str]:
    """Active jobs whose metadata names this flow run as their creator."""
    run = str(flow_run_id)
    return [job.id for job in client.fine_tuning.jobs.list(metadata={OWNER: run}, limit=100)
            if (job.metadata or {}).get(OWNER) == run and job.status in ACTIVE]


def stop_job_of_run(client: OpenAI, flow_run_id: Any, cancel: bool, why: str, logger: Any = _log) -> str:
    """Cancel the job of a run that stops early, or leave it running and say why; return that one line.

    ``why`` starts the line ("flow run cancelled", "interrupted (Ctrl-C)"). With ``cancel`` off, or when another
    active run follows the same job, the job keeps running and the line says how to follow it again.
    """
    try:
        job_id = recorded_job(flow_run_id)
        job_ids = [job_id] if job_id else jobs_started_by(client, flow_run_id)
    except Exception as e:  # noqa: BLE001 - say what is known rather than fail the hook
        job_ids, line = [], f"{why}; the job of this run could not be looked up ({describe_error(e)})"
        logger.warning(line)
        return line
    if not job_ids:
        line = f"{why}; this run had not started a fine-tuning job: nothing to cancel"
    else:
        line = "; ".join(_stop(client, job, flow_run_id, cancel, why) for job in job_ids)
    (logger.warning if "keeps running" in line or "failed" in line else logger.info)(line)
    return line


def _stop(client: OpenAI, job_id: str, flow_run_id: Any, cancel: bool, why: str) -> str:
    if not cancel:
        return f"{why}: fine-tuning job {job_id} keeps running (cancel_job_on_cancel is off); {FOLLOW_AGAIN}"
    try:
        others = other_followers(job_id, flow_run_id)
        if others:
            runs = ", ".join(others)
            return (f"{why}: fine-tuning job {job_id} keeps running, not cancelled: it is shared with flow "
                    f"run{'s' if len(others) > 1 else ''} {runs}, which follow{'' if len(others) > 1 else 's'} it "
                    "too; cancel that run as well to stop the job")
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status not in ACTIVE:
            return f"{why}: fine-tuning job {job_id} already {job.status}; nothing to cancel"
        job = client.fine_tuning.jobs.cancel(job_id)
    except Exception as e:  # noqa: BLE001 - one line, whatever went wrong
        return (f"{why}: cancelling fine-tuning job {job_id} failed ({describe_error(e)}); it may keep running: "
                "cancel it in OpenAI's dashboard")
    return f"{why}: cancelled fine-tuning job {job_id} (now {job.status})"
