"""Fine-tune: start one job per (files, settings), follow it to the end, and record what it made.

Pure part: :func:`job_key` names a job by its files and settings (stored in the job's metadata, with the flow
run that created it), so :func:`find_job` finds a job that is running or succeeded for the same inputs and it
is not started twice; :func:`settle_job` makes runs that raced past that look-up converge on the oldest job;
:func:`cost_check` prices a job before it is created (``--max-cost``); :func:`new_events` makes the job's
log readable (each event once). Tasks: :func:`wait_for_files`, :func:`start_job`, :func:`follow_job`,
:func:`publish_job`. What becomes of a job when its run stops early is :mod:`tasks.job_runs`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import openai
from openai import OpenAI
from prefect import get_run_logger
from prefect.cache_policies import NO_CACHE

from ftprep import variables
from ftprep.errors import InputError, RemoteError
from ftprep.models import FineTuneConfig, FineTuneResult
from ftprep.names import (
    ARTIFACT_FINE_TUNE,
    DEFAULT_PROJECT,
    LATEST_FILES,
    LATEST_JOB,
    LATEST_MODEL,
    artifact_key,
    variable_name,
)
from ftprep.redact import redact
from ftprep.remote import DEFAULT_POLICY, RemotePolicy, as_remote_error, describe_error, poll
from ftprep.steps import task
from tasks.upload import wait_until_processed

ACTIVE = {"validating_files", "queued", "running"}
REUSABLE = ACTIVE | {"succeeded"}
FINAL = {"succeeded", "failed", "cancelled"}
KEY = "ftprep_key"
OWNER = "ftprep_flow_run"  # metadata: the flow run that created the job


def job_params(training_file: str, validation_file: str | None, config: FineTuneConfig) -> dict[str, Any]:
    """The ``fine_tuning.jobs.create`` arguments for these files and settings."""
    params: dict[str, Any] = {"model": config.model, "training_file": training_file}
    if validation_file:
        params["validation_file"] = validation_file
    if config.seed is not None:
        params["seed"] = config.seed
    if config.epochs != "auto":  # "auto" sends none: OpenAI chooses (the same job key as before "auto" existed)
        params["hyperparameters"] = {"n_epochs": config.epochs}
    if config.suffix:
        params["suffix"] = config.suffix
    if config.wandb_project:
        params["integrations"] = [{"type": "wandb", "wandb": {"project": config.wandb_project}}]
    return params


def job_key(params: dict[str, Any]) -> str:
    """A short stable name for a job's inputs (files and settings), kept in the job's metadata."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]


def matching_jobs(client: OpenAI, key: str) -> list[Any]:
    """Jobs with this key that are running or succeeded, oldest first (failed/cancelled ones are not reused)."""
    found = [job for job in client.fine_tuning.jobs.list(metadata={KEY: key}, limit=100)
             if (job.metadata or {}).get(KEY) == key and job.status in REUSABLE]
    return found[::-1]  # the API lists newest first


def find_job(client: OpenAI, key: str):
    """The job every run with these inputs follows: the oldest one running or succeeded, or None."""
    jobs = matching_jobs(client, key)
    return jobs[0] if jobs else None


def owner(job: Any) -> str | None:
    """The flow run that created ``job`` (from its metadata), if ftprep created it from a flow run."""
    return (job.metadata or {}).get(OWNER) or None


def settle_job(client: OpenAI, key: str, logger: Any, run_id: str | None = None, mine: Any = None):
    """The job every run with this key follows (the oldest running or succeeded one), or None.

    Runs that create a job at the same moment cannot see each other's job when they look first, so each looks
    again after creating: every racer keeps the oldest job and cancels its own newer one (``mine``, or any
    active job whose metadata names ``run_id``), so one paid job is left.
    """
    jobs = matching_jobs(client, key)
    if mine is not None and not any(j.id == mine.id for j in jobs):
        jobs.append(mine)  # not listed yet: it is the newest
    if not jobs:
        return None
    kept = jobs[0]
    for job in jobs[1:]:
        if job.status in ACTIVE and ((mine is not None and job.id == mine.id) or (run_id and owner(job) == run_id)):
            client.fine_tuning.jobs.cancel(job.id)
            logger.warning("Cancelled job %s: job %s for the same files and settings was created just before it "
                           "(by a run racing this one); following that one", job.id, kept.id)
    return kept


def cost_check(max_cost: float | None, files: dict[str, Any], training_file: str, config: FineTuneConfig,
               price_override: float | None = None, project: str = DEFAULT_PROJECT) -> tuple[str | None, str | None]:
    """(the estimate as a line, the refusal) for a new job under ``max_cost`` USD; (None, None) with no limit.

    The estimate is the latest prepare run's billable training tokens (``files``: the project's Prefect Variable
    ftprep_latest_files)
    x the epochs (OpenAI's default for the file's size when unset) x the model's training price.
    """
    from ftprep.openai_models import default_epochs
    from tasks.validate import training_price

    if max_cost is None:
        return None, None
    limit = f"max_cost (--max-cost) ${max_cost:,.2f}"
    billable, examples = files.get("train_billable_tokens"), files.get("train_examples")
    if files.get("train_file_id") != training_file or billable is None or not examples:
        return None, (f"the training cost of {training_file} cannot be estimated for {limit} (the latest prepare "
                      f"run's Prefect Variable {variable_name(LATEST_FILES, project)!r} has no token count for it); "
                      "run prepare for these files, or leave the limit out")
    try:
        price = training_price(config.model, price_override)
    except InputError:
        return None, (f"no training price is known for {config.model} to check {limit}; set "
                      "FTPREP_TRAINING_PRICE_PER_1M, or leave the limit out")
    epochs = config.epochs if config.epochs != "auto" else default_epochs(examples)
    cost = round(billable * epochs * price / 1e6, 4)
    estimate = (f"estimated training cost ${cost:,.2f} ({billable:,} billable tokens x {epochs} "
                f"epoch{'s' if epochs != 1 else ''} x ${price:g} per 1M tokens of {config.model})")
    if cost > max_cost:
        return estimate, (f"{estimate} is above {limit}; no job was created: raise the limit, or train on fewer "
                          "examples or epochs")
    return estimate, None


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
    """The job as the run records it (and the UI shows it)."""
    error = None
    if job.error is not None and getattr(job.error, "message", None):
        error = redact(" ".join(str(job.error.message).split()))
    return FineTuneResult(job_id=job.id, status=job.status, model=job.model, training_file=job.training_file,
                          validation_file=job.validation_file, fine_tuned_model=job.fine_tuned_model,
                          trained_tokens=job.trained_tokens, result_files=tuple(job.result_files or ()),
                          error=error, reused=reused, started_by=owner(job))


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
def start_job(client: OpenAI, training_file: str, validation_file: str | None, config: FineTuneConfig,
              run_id: str | None = None, refusal: str | None = None) -> FineTuneResult:
    """Start the job, unless one for the same files and settings is running or succeeded: then reuse it.

    ``run_id`` (the flow run) is kept in the new job's metadata, so a cancelled run finds the job it created.
    ``refusal`` (say, the estimated cost is above --max-cost) stops the run before a new job is created.
    """
    logger = get_run_logger()
    params = job_params(training_file, validation_file, config)
    key = job_key(params)
    try:
        kept = settle_job(client, key, logger, run_id)
        if kept is not None:
            reused = not (run_id and owner(kept) == run_id)  # else an earlier attempt of this run created it
            if reused:
                logger.info("Reusing job %s (%s) for the same files and settings; not starting another", kept.id,
                            kept.status)
            return job_result(kept, reused=reused)
        if refusal:
            raise InputError(refusal)
        job = client.fine_tuning.jobs.create(**params, metadata={KEY: key} | ({OWNER: run_id} if run_id else {}))
        logger.info("Started job %s: %s on %s (validation %s), settings %s", job.id, config.model, training_file,
                    validation_file or "none", json.dumps({k: v for k, v in params.items() if k not in
                                                           ("model", "training_file", "validation_file")}))
        kept = settle_job(client, key, logger, run_id, mine=job)
    except openai.APIError as e:
        raise as_remote_error(f"fine-tuning job for {training_file}", e) from None
    return job_result(kept, reused=kept.id != job.id)


@task(name="follow-job", cache_policy=NO_CACHE)
def follow_job(client: OpenAI, job_id: str, policy: RemotePolicy = DEFAULT_POLICY, poll_base: float = 2.0,
               poll_cap: float = 60.0, timeout: float | None = None) -> FineTuneResult:
    """Follow the job until it ends (succeeded, failed or cancelled), logging each new event once.

    Only the job's own status decides: a failing events endpoint is logged and skipped (events only decorate
    the log). A poll that fails transiently is a missed poll; the wait is bounded by ``timeout`` (default: the
    policy's FTPREP_JOB_TIMEOUT), and a line is logged every FTPREP_HEARTBEAT_SECONDS while nothing changes.
    """
    logger = get_run_logger()
    timeout = policy.job_timeout if timeout is None else timeout
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
        raise RemoteError(f"fine-tuning job {job_id} still {e} after {timeout:g} s (the job timeout); it keeps "
                          "running: run ftprep fine-tune again with the same files and settings to follow it, or "
                          "wait longer with --job-timeout / FTPREP_JOB_TIMEOUT") from None
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


@task(name="publish-job", cache_policy=NO_CACHE)
def publish_job(result: FineTuneResult) -> None:
    """Record the job in the Variables the evaluate run reads, and as an artifact, under the job's project."""
    from prefect.artifacts import create_table_artifact

    job_variable = variable_name(LATEST_JOB, result.project)
    variables.write(job_variable, result.model_dump(mode="json"))
    if result.status == "succeeded" and result.fine_tuned_model:
        variables.write(variable_name(LATEST_MODEL, result.project), result.model_dump(mode="json"))
    create_table_artifact(key=artifact_key(ARTIFACT_FINE_TUNE, result.project),
                          table=[result.model_dump(mode="json")],
                          description=f"Fine-tuning job {result.job_id}: {result.status}")
    get_run_logger().info("Stored job %s (%s, model %s) in Prefect Variable %r", result.job_id, result.status,
                          result.fine_tuned_model or "none yet", job_variable)
