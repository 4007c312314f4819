"""Fine-tune: start one job per (files, settings), follow it to the end, and record what it made.

Pure part: :func:`job_key` names a job by its files and settings (stored in the job's metadata), so
:func:`find_job` finds a job that is running or succeeded for the same inputs and it is not started twice;
:func:`new_events` makes the job's log readable (each event once). Tasks:
:func:`wait_for_files`, :func:`start_job`, :func:`follow_job` (and :func:`cancel_job` for a cancelled run).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import openai
from openai import OpenAI
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ftprep.errors import InputError, RemoteError
from ftprep.models import FineTuneConfig, FineTuneResult
from ftprep.names import ARTIFACT_FINE_TUNE, LATEST_JOB, LATEST_MODEL
from ftprep.redact import redact
from ftprep.remote import DEFAULT_POLICY, RemotePolicy, as_remote_error, describe_error, poll
from tasks.upload import wait_until_processed

ACTIVE = {"validating_files", "queued", "running"}
REUSABLE = ACTIVE | {"succeeded"}
FINAL = {"succeeded", "failed", "cancelled"}
KEY = "ftprep_key"


def job_params(training_file: str, validation_file: str | None, config: FineTuneConfig) -> dict[str, Any]:
    """The ``fine_tuning.jobs.create`` arguments for these files and settings."""
    params: dict[str, Any] = {"model": config.model, "training_file": training_file}
    if validation_file:
        params["validation_file"] = validation_file
    if config.seed is not None:
        params["seed"] = config.seed
    if config.n_epochs is not None:
        params["hyperparameters"] = {"n_epochs": config.n_epochs}
    if config.suffix:
        params["suffix"] = config.suffix
    if config.wandb_project:
        params["integrations"] = [{"type": "wandb", "wandb": {"project": config.wandb_project}}]
    return params


def job_key(params: dict[str, Any]) -> str:
    """A short stable name for a job's inputs (files and settings), kept in the job's metadata."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]


def find_job(client: OpenAI, key: str):
    """The newest job with this key that is running or succeeded, or None (failed/cancelled ones are retried)."""
    for job in client.fine_tuning.jobs.list(metadata={KEY: key}, limit=100):
        if (job.metadata or {}).get(KEY) == key and job.status in REUSABLE:
            return job
    return None


def new_events(client: OpenAI, job_id: str, seen: set[str]) -> list[Any]:
    """Events not seen yet, oldest first (the API lists newest first)."""
    fresh = []
    for event in client.fine_tuning.jobs.list_events(job_id, limit=100):
        if event.id in seen:
            break
        fresh.append(event)
    fresh.reverse()
    seen.update(e.id for e in fresh)
    return fresh


def job_result(job: Any, reused: bool = False) -> FineTuneResult:
    error = None
    if job.error is not None and getattr(job.error, "message", None):
        error = redact(" ".join(str(job.error.message).split()))
    return FineTuneResult(job_id=job.id, status=job.status, model=job.model, training_file=job.training_file,
                          validation_file=job.validation_file, fine_tuned_model=job.fine_tuned_model,
                          trained_tokens=job.trained_tokens, result_files=tuple(job.result_files or ()),
                          error=error, reused=reused)


# ----------------------------------------------------------------------------------------------- tasks
@task(name="wait-for-files", cache_policy=NO_CACHE, **DEFAULT_POLICY.task_options())
def wait_for_files(client: OpenAI, file_ids: Iterable[str], policy: RemotePolicy = DEFAULT_POLICY,
                   timeout: float | None = None) -> None:
    """Both files must exist and be processed before a job can use them (bounded by ``timeout``)."""
    logger = get_run_logger()
    for file_id in file_ids:
        try:
            file = client.files.retrieve(file_id)
        except openai.NotFoundError:
            raise InputError(f"file {file_id} does not exist on the server; run prepare again to upload it") from None
        except openai.APIError as e:
            raise as_remote_error(f"reading file {file_id}", e) from None
        file = wait_until_processed(client, file, policy, logger=logger, timeout=timeout)
        logger.info("File %s (%s, %s bytes) is processed", file.id, file.filename, f"{file.bytes:,}")


@task(name="start-job", cache_policy=NO_CACHE, **DEFAULT_POLICY.task_options())
def start_job(client: OpenAI, training_file: str, validation_file: str | None,
              config: FineTuneConfig) -> FineTuneResult:
    """Start the job, unless one for the same files and settings is running or succeeded: then reuse it."""
    logger = get_run_logger()
    params = job_params(training_file, validation_file, config)
    key = job_key(params)
    try:
        existing = find_job(client, key)
        if existing is not None:
            logger.info("Reusing job %s (%s) for the same files and settings; not starting another", existing.id,
                        existing.status)
            return job_result(existing, reused=True)
        job = client.fine_tuning.jobs.create(**params, metadata={KEY: key})
    except openai.APIError as e:
        raise as_remote_error(f"fine-tuning job for {training_file}", e) from None
    logger.info("Started job %s: %s on %s (validation %s), settings %s", job.id, config.model, training_file,
                validation_file or "none", json.dumps({k: v for k, v in params.items() if k not in
                                                       ("model", "training_file", "validation_file")}))
    return job_result(job)


@task(name="follow-job", cache_policy=NO_CACHE)
def follow_job(client: OpenAI, job_id: str, policy: RemotePolicy = DEFAULT_POLICY, poll_base: float = 2.0,
               poll_cap: float = 60.0, timeout: float = 24 * 3600) -> FineTuneResult:
    """Follow the job until it ends (succeeded, failed or cancelled), logging each new event once.

    Only the job's own status decides: a failing events endpoint is logged and skipped (events only decorate
    the log). A poll that fails transiently is a missed poll; the wait is bounded by ``timeout``.
    """
    logger = get_run_logger()
    seen: set[str] = set()
    state: dict[str, Any] = {"status": None, "events_failing": False}

    def fetch():
        job = client.fine_tuning.jobs.retrieve(job_id)
        try:
            events = new_events(client, job_id, seen)
            state["events_failing"] = False
        except Exception as e:  # noqa: BLE001 - events only decorate the log
            if not state["events_failing"]:
                logger.warning("Reading the events of %s failed: %s; following its status only", job_id,
                               describe_error(e))
            state["events_failing"], events = True, []
        for event in events:
            (logger.warning if event.level in ("warn", "error") else logger.info)("%s: %s", job_id, event.message)
        if job.status != state["status"]:
            logger.info("Job %s is %s", job_id, job.status)
            state["status"] = job.status
        return job

    try:
        job = poll(fetch, lambda j: j.status in FINAL, what=f"fine-tuning job {job_id}", timeout=timeout,
                   policy=policy, describe=lambda j: f"{j.status}, {len(seen)} events", logger=logger,
                   base=poll_base, cap=poll_cap)
    except TimeoutError as e:
        raise RemoteError(f"fine-tuning job {job_id} still {e} after {timeout:g} s; it keeps running: run the "
                          "flow again to follow it") from None
    if job.status == "succeeded":
        logger.info("Job %s succeeded: model %s, %s trained tokens", job_id, job.fine_tuned_model,
                    f"{job.trained_tokens or 0:,}")
    return job_result(job)


def failure(result: FineTuneResult) -> RemoteError | None:
    """The error a run ends with when its job did not succeed (with OpenAI's message)."""
    if result.status == "failed":
        return RemoteError(f"fine-tuning job {result.job_id} failed: {result.error or 'no reason given'}")
    if result.status == "cancelled":
        return RemoteError(f"fine-tuning job {result.job_id} was cancelled")
    return None


@task(name="publish-job")
def publish_job(result: FineTuneResult) -> None:
    """Record the job in the Variable the evaluate run reads, and as an artifact."""
    from prefect.artifacts import create_table_artifact
    from prefect.variables import Variable

    Variable.set(LATEST_JOB, result.model_dump(mode="json"), overwrite=True)
    if result.status == "succeeded" and result.fine_tuned_model:
        Variable.set(LATEST_MODEL, result.model_dump(mode="json"), overwrite=True)
    create_table_artifact(key=ARTIFACT_FINE_TUNE, table=[result.model_dump(mode="json")],
                          description=f"Fine-tuning job {result.job_id}: {result.status}")
    get_run_logger().info("Stored job %s (%s, model %s) in Prefect Variable %r", result.job_id, result.status,
                          result.fine_tuned_model or "none yet", LATEST_JOB)


def cancel_job(client: OpenAI, job_id: str, logger: Any) -> str | None:
    """Cancel a job that is still active; a job that already ended is left as it is."""
    job = client.fine_tuning.jobs.retrieve(job_id)
    if job.status not in ACTIVE:
        logger.info("Job %s already %s; nothing to cancel", job_id, job.status)
        return job.status
    job = client.fine_tuning.jobs.cancel(job_id)
    logger.warning("Cancelled fine-tuning job %s because its flow run was cancelled (now %s)", job_id, job.status)
    return job.status
