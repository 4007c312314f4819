"""The fine-tune flow: the files of the latest prepare run → one fine-tuning job, followed to its end.

Run it with ``ftprep fine-tune`` or from the Prefect UI (deployment ``fine-tune-latest``).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.variables import Variable

from ftprep.client import make_client
from ftprep.errors import InputError
from ftprep.models import FineTuneConfig, FineTuneResult
from ftprep.names import FLOW_FINE_TUNE, LATEST_FILES, LATEST_JOB
from ftprep.remote import RemotePolicy
from ftprep.settings import load_settings
from tasks.finetune import cancel_job, failure, follow_job, publish_job, start_job, wait_for_files


def _cancel_job_of_cancelled_run(flow, flow_run, state) -> None:
    """On cancellation of the flow run, cancel the job it started (when ``cancel_job_on_cancel``).

    Runs in the worker or runner after the flow's process was stopped, so it finds the job through the
    Variable the run wrote when it started the job.
    """
    from prefect.logging.loggers import flow_run_logger

    logger = flow_run_logger(flow_run, flow)
    job = Variable.get(LATEST_JOB) or {}
    if job.get("flow_run_id") != str(flow_run.id):
        return
    if not flow_run.parameters.get("cancel_job_on_cancel", True):
        logger.info("Flow run cancelled; job %s keeps running (cancel_job_on_cancel is off)", job["job_id"])
        return
    cancel_job(make_client(load_settings()), job["job_id"], logger)


@flow(name=FLOW_FINE_TUNE, persist_result=True, result_serializer="json",
      on_cancellation=[_cancel_job_of_cancelled_run])
def fine_tune(
    training_file: str | None = None,
    validation_file: str | None = None,
    job: FineTuneConfig = FineTuneConfig(),  # noqa: B008 - frozen pydantic model
    cancel_job_on_cancel: bool = True,
    poll_seconds: float = 10.0,
) -> FineTuneResult:
    """Start (once) and follow a fine-tuning job on the files of the latest prepare run.

    Args:
        training_file: OpenAI file id; default: the latest prepare run's (Prefect Variable ftprep_latest_files).
        validation_file: OpenAI file id; default: the latest prepare run's.
        job: Model, seed, epochs, suffix and the optional Weights & Biases project.
        cancel_job_on_cancel: Cancel the OpenAI job when this flow run is cancelled.
        poll_seconds: First polling interval; it backs off up to 60 s while nothing changes.
    """
    from prefect.runtime import flow_run

    logger = get_run_logger()
    settings = load_settings()
    if training_file is None:
        latest = Variable.get(LATEST_FILES) or {}
        training_file = latest.get("train_file_id")
        validation_file = validation_file or latest.get("validation_file_id")
        if not training_file:
            raise InputError("no training file: run prepare with an API key first (it stores the file ids in the "
                             f"Prefect Variable {LATEST_FILES!r}), or pass --training-file")
        if latest.get("remote") and latest["remote"] != settings.remote:
            raise InputError(f"the latest prepared files were uploaded to {latest['remote']}, but OPENAI_BASE_URL "
                             f"points at {settings.remote}; run prepare against it, or pass --training-file")
        logger.info("Using the latest prepared files: training %s, validation %s", training_file, validation_file)
    client, policy = make_client(settings), RemotePolicy.from_settings(settings)
    wait_for_files.with_options(**policy.task_options())(client, [f for f in (training_file, validation_file) if f],
                                                          policy)
    started = start_job.with_options(**policy.task_options())(client, training_file, validation_file, job)
    Variable.set(LATEST_JOB, started.model_dump(mode="json") | {"flow_run_id": str(flow_run.id)}, overwrite=True)
    result = follow_job(client, started.job_id, policy, poll_base=poll_seconds)
    result = result.model_copy(update={"reused": started.reused})
    publish_job(result)
    if (error := failure(result)) is not None:
        raise error
    return result
