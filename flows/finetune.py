"""The fine-tune flow: the files of the latest prepare run → one fine-tuning job, followed to its end.

Run it with ``ftprep fine-tune`` or from the Prefect UI (deployment ``fine-tune-latest``). The run records the
job it follows under its own flow run id (:mod:`tasks.job_runs`), so cancelling this run, or pressing Ctrl-C,
stops exactly this run's job, unless another run follows it too.
"""

from __future__ import annotations

from typing import Annotated

from prefect import get_run_logger
from pydantic import Field

from ftprep import variables
from ftprep.client import make_client, require_key
from ftprep.errors import InputError, Interrupted
from ftprep.models import FineTuneConfig, FineTuneResult
from ftprep.names import (
    FLOW_FINE_TUNE,
    LATEST_FILES,
    LATEST_JOB,
    ProjectParameter,
    project_of,
    project_option,
    variable_name,
)
from ftprep.remote import RemotePolicy
from ftprep.results import flow_storage
from ftprep.settings import load_settings
from ftprep.steps import flow
from ftprep.variables import latest_files
from tasks.finetune import cost_check, failure, follow_job, publish_job, start_job, wait_for_files
from tasks.job_runs import FOLLOW_AGAIN, forget, remember, stop_job_of_run


def _cancel_job_of_cancelled_run(flow, flow_run, state) -> None:
    """On cancellation, cancel this run's job (when ``cancel_job_on_cancel``), unless another run follows it.

    Runs in the worker or runner after the flow's process was stopped: it finds the job through the run's own
    record (or the job's metadata), never through the latest job of any run.
    """
    from prefect.logging.loggers import flow_run_logger

    logger = flow_run_logger(flow_run, flow)
    cancel = bool(flow_run.parameters.get("cancel_job_on_cancel", True))
    stop_job_of_run(make_client(load_settings()), flow_run.id, cancel, "flow run cancelled", logger)
    forget(flow_run.id)


def _forget_job_of_crashed_run(flow, flow_run, state) -> None:
    """A crashed run leaves its job running (a crash says nothing about the job): say so, drop the record."""
    from prefect.logging.loggers import flow_run_logger

    from tasks.job_runs import recorded_job

    job_id = recorded_job(flow_run.id)
    if job_id:
        flow_run_logger(flow_run, flow).warning("flow run crashed: fine-tuning job %s keeps running; %s", job_id,
                                                FOLLOW_AGAIN)
    forget(flow_run.id)


@flow(name=FLOW_FINE_TUNE, persist_result=True, result_serializer="json", result_storage=flow_storage(),
      on_cancellation=[_cancel_job_of_cancelled_run], on_crashed=[_forget_job_of_crashed_run])
def fine_tune(
    training_file: str | None = None,
    validation_file: str | None = None,
    job: FineTuneConfig = FineTuneConfig(),  # noqa: B008 - frozen pydantic model
    cancel_job_on_cancel: bool = True,
    poll_seconds: Annotated[float, Field(gt=0)] = 10.0,
    processing_timeout: Annotated[float | None, Field(gt=0)] = None,
    job_timeout: Annotated[float | None, Field(gt=0)] = None,
    max_cost: Annotated[float | None, Field(ge=0)] = None,
    project: ProjectParameter = None,
) -> FineTuneResult:
    """Start (once) and follow a fine-tuning job on the files of the project's latest prepare run.

    Args:
        training_file: OpenAI file id; default: the latest prepare run's (Prefect Variable ftprep_latest_files).
        validation_file: OpenAI file id; default: the latest prepare run's.
        job: Model, seed, epochs, suffix and the optional Weights & Biases project.
        cancel_job_on_cancel: Cancel the OpenAI job when this flow run is cancelled or interrupted (Ctrl-C),
            unless another run follows the same job.
        poll_seconds: First polling interval; it backs off up to 60 s while nothing changes.
        processing_timeout: Longest wait, in seconds, for the files to be processed; default
            FTPREP_PROCESSING_TIMEOUT (600).
        job_timeout: Longest wait, in seconds, for the job to end (it keeps running after); default
            FTPREP_JOB_TIMEOUT (86400).
        max_cost: Refuse to create a job whose estimated training cost is above this many USD.
        project: Read the latest prepared files of this project and record the job under it (Prefect Variables
            ftprep_latest_job and ftprep_latest_model), for evaluate --project; default: FTPREP_PROJECT, else
            'default' (the plain names).
    """
    from prefect.runtime import flow_run

    logger = get_run_logger()
    settings = load_settings()
    require_key(settings)  # first: without a key, nothing below could be done
    project = project_of(project, settings.project)
    latest = latest_files(project)
    if training_file is None:
        training_file = latest.get("train_file_id")
        validation_file = validation_file or latest.get("validation_file_id")
        if not training_file:
            raise InputError(f"no training file: run prepare{project_option(project)} with an API key first (it "
                             f"stores the file ids in the Prefect Variable {variable_name(LATEST_FILES, project)!r}), "
                             "or pass --training-file")
        if latest.get("remote") and latest["remote"] != settings.remote:
            raise InputError(f"the latest prepared files were uploaded to {latest['remote']}, but OPENAI_BASE_URL "
                             f"points at {settings.remote}; run prepare against it, or pass --training-file")
        logger.info("Using the latest prepared files of project %r: training %s, validation %s", project,
                    training_file, validation_file)
    estimate, refusal = cost_check(max_cost, latest, training_file, job, settings.training_price_per_1m, project)
    if estimate and not refusal:
        logger.info("%s, within max_cost $%.2f", estimate[0].upper() + estimate[1:], max_cost)
    client, policy = make_client(settings), RemotePolicy.from_settings(settings)
    run_id = str(flow_run.id)
    try:
        wait_for_files.with_options(**policy.task_options())(
            client, [f for f in (training_file, validation_file) if f], policy, timeout=processing_timeout)
        started = start_job.with_options(**policy.task_options())(client, training_file, validation_file, job,
                                                                  run_id=run_id, refusal=refusal)
        remember(run_id, started)
        variables.write(variable_name(LATEST_JOB, project),
                        started.model_dump(mode="json") | {"flow_run_id": run_id, "project": project})
        result = follow_job(client, started.job_id, policy, poll_base=poll_seconds, timeout=job_timeout)
    except KeyboardInterrupt:
        # Ctrl-C in a terminal: the run would end Crashed and no cancellation hook would run; decide here.
        line = stop_job_of_run(client, run_id, cancel_job_on_cancel, "interrupted (Ctrl-C)", logger)
        forget(run_id)
        raise Interrupted(line) from None
    except Exception:
        forget(run_id)
        raise
    # not in a finally: a cancelled run's record must outlive its process, for the cancellation hook
    forget(run_id)
    result = result.model_copy(update={"reused": started.reused, "started_by": started.started_by, "project": project})
    publish_job(result)
    if (error := failure(result)) is not None:
        raise error
    return result
