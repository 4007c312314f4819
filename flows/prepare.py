"""The prepare flow: load → split → format → write → validate → upload → publish."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.tasks import exponential_backoff

from ftprep.client import make_client, upload_policy
from ftprep.models import PrepareResult, SplitConfig
from ftprep.openai_models import DEFAULT_MODEL
from ftprep.settings import load_settings
from tasks.format import format_examples, resolve_template
from tasks.load import load_dataset
from tasks.publish import publish_result
from tasks.split import split_dataset
from tasks.upload import upload_file
from tasks.validate import training_price, validate_written
from tasks.write import files_intact, write_files

NO_KEY = ("upload skipped: OPENAI_API_KEY is not set. Put OPENAI_API_KEY=sk-... in the environment or in .env "
          "and run again to upload (the files are already written and will not be rewritten)")


@flow(name="prepare", persist_result=True, result_serializer="json", log_prints=False)
def prepare(
    data: str,
    validation_data: str | None = None,
    split: SplitConfig = SplitConfig(),  # noqa: B008 - a frozen pydantic model is a safe default
    template: str = "course",
    out: str = "out",
    upload: bool = True,
    model: str = DEFAULT_MODEL,
) -> PrepareResult:
    """Write training and validation JSONL files from a dataset and upload them for fine-tuning.

    Args:
        data: Dataset file (.pkl, .csv, .jsonl or .parquet).
        validation_data: Optional separate dataset for validation examples.
        split: Sizes, offsets and shuffling of the training and validation examples.
        template: A preset (course, course-summary) or a .json/.toml template file.
        out: Folder for the JSONL files and manifest.json.
        upload: Upload the files to OpenAI (needs OPENAI_API_KEY).
        model: The model the files are for: its per-example token limit and training price.
    """
    logger = get_run_logger()
    settings = load_settings()
    # absolute paths: cache keys and results must not depend on the folder a run starts in
    data, out = str(Path(data).resolve()), str(Path(out).resolve())
    validation_data = str(Path(validation_data).resolve()) if validation_data else None
    ref = load_dataset(data)
    vref = load_dataset(validation_data) if validation_data else None
    plan = split_dataset(ref, split, vref)
    fmt = format_examples(resolve_template(template), plan)
    files = write_files(plan, fmt, out)
    if not files_intact(files):
        logger.info("Output files changed since they were written; writing them again")
        files = write_files.with_options(refresh_cache=True)(plan, fmt, out)
    report = validate_written(files, model, training_price(model))  # errors stop the flow here, before any upload

    uploaded, skipped = (), None
    if not upload:
        skipped = "upload not requested (--no-upload)"
    elif not settings.has_key:
        skipped = NO_KEY
        logger.warning(NO_KEY)
    else:
        client = make_client(settings)
        uploader = upload_file.with_options(
            retries=settings.upload_retries,
            retry_delay_seconds=exponential_backoff(settings.retry_base_seconds)(settings.upload_retries)
            if settings.upload_retries else 0,
        )
        policy = upload_policy(settings)
        futures = [uploader.submit(client, f.path, f.sha256, f.examples, f.role, policy=policy)
                   for f in files.files()]
        uploaded = tuple(fut.result() for fut in futures)

    result = PrepareResult(dataset=ref, split=plan, template=fmt.template.name, files=files, validation=report,
                           remote=settings.remote if uploaded else None, uploaded=uploaded,
                           upload_skipped_reason=skipped)
    publish_result(result)
    return result
