"""The prepare flow: load → split → format → write → validate → upload → publish.

Run it with ``ftprep prepare --data items.pkl`` or from the Prefect UI (deployment ``prepare-sample``). It
composes the tasks of ``tasks/`` and nothing else: settings are read once here and handed to the tasks that
need them, the records travel in one store made for this run, and the tasks pass each other only references.
"""

from __future__ import annotations

from prefect import get_run_logger

from ftprep.client import make_client
from ftprep.models import PrepareResult, SplitConfig
from ftprep.names import FLOW_PREPARE, ProjectParameter, project_of
from ftprep.openai_models import DEFAULT_MODEL
from ftprep.remote import RemotePolicy
from ftprep.results import flow_storage
from ftprep.settings import load_settings
from ftprep.steps import flow
from ftprep.storage import normalize, parent
from tasks.chart_draw import Painter
from tasks.charts import draw_targets, draw_tokens
from tasks.format import format_examples, resolve_template
from tasks.load import load_dataset, new_store, read_here
from tasks.publish import publish_result
from tasks.scan_child import drop_ahead
from tasks.split import split_dataset
from tasks.upload import upload_file
from tasks.validate import count_ahead, training_price, validate_written
from tasks.write import files_intact, write_files

NO_KEY = ("upload skipped: OPENAI_API_KEY is not set. Put OPENAI_API_KEY=sk-... in the environment or in .env "
          "and run again to upload (the files are already written and will not be rewritten)")


@flow(name=FLOW_PREPARE, persist_result=True, result_serializer="json", result_storage=flow_storage(), log_prints=False)
def prepare(
    data: str,
    validation_data: str | None = None,
    split: SplitConfig = SplitConfig(),  # noqa: B008 - a frozen pydantic model is a safe default
    template: str = "course",
    out: str = "out",
    upload: bool = True,
    model: str = DEFAULT_MODEL,
    exact_tokens: bool = False,
    project: ProjectParameter = None,
) -> PrepareResult:
    """Write training and validation JSONL files from a dataset and upload them for fine-tuning.

    Args:
        data: Dataset file (.pkl, .csv, .jsonl or .parquet): a path or a URL (s3://bucket/key, file://...).
        validation_data: Optional separate dataset for validation examples (a path or a URL).
        split: Sizes, offsets and shuffling of the training and validation examples.
        template: A preset (course, course-summary) or a .json/.toml template file.
        out: Folder for the JSONL files and manifest.json: a path or a URL (s3://bucket/prefix).
        upload: Upload the files to OpenAI (needs OPENAI_API_KEY).
        model: The model the files are for: its per-example token limit and training price.
        exact_tokens: Count every token of large files (slower); by default their statistics and cost come from
            a deterministic sample of 20,000 examples with a 95% interval, and the limit is checked on all.
        project: Publish the file ids (Prefect Variable ftprep_latest_files) and artifacts under this project, so
            fine-tune --project finds them; default: FTPREP_PROJECT, else 'default' (the plain names).
    """
    logger = get_run_logger()
    settings = load_settings()
    project = project_of(project, settings.project)
    store = new_store()
    # absolute paths or URLs: cached results must not depend on the folder a run starts in
    data, out = normalize(data, "--data"), normalize(out, "--out")
    validation_data = normalize(validation_data, "--validation-data") if validation_data else None
    # the charts' child process imports matplotlib on another core while the dataset is read (one core, and the
    # GIL, for itself), unless the command started it already
    painter = Painter.shared()
    # keyed by content, so the reference may be one a run elsewhere made; this run reads its own copy
    ref = read_here(load_dataset(data, store), data, store)
    vref = read_here(load_dataset(validation_data, store), validation_data, store) if validation_data else None
    # the tokenizer loads (in the command's validation process, or on a thread) while the examples are written
    count_ahead(model, out, exact_tokens)
    plan = split_dataset(ref, split, vref, store)
    fmt = format_examples(resolve_template(template), plan, store)
    files = write_files(plan, fmt, out, store, project)
    if not files_intact(files):
        logger.info("Output files changed since they were written; writing them again")
        files = write_files.with_options(refresh_cache=True)(plan, fmt, out, store, project)
    # pictures are drawn beside validation and the uploads, into the generation that publish commits
    generation = parent(files.train.path)
    targets = draw_targets.submit(plan, fmt.template, generation, store, painter)
    # errors stop the flow here, before any upload
    report = validate_written(files, model, training_price(model, settings.training_price_per_1m), exact_tokens,
                              project)
    drop_ahead()  # a validate step answered from its cache leaves the training file's checks ahead unused

    charts = draw_tokens.submit(report, generation, targets, painter)
    uploaded, skipped = (), None
    if not upload:
        skipped = "upload not requested (--no-upload)"
    elif not settings.has_key:
        skipped = NO_KEY
        logger.warning(NO_KEY)
    else:
        client, policy = make_client(settings), RemotePolicy.from_settings(settings)
        uploader = upload_file.with_options(**policy.task_options())
        futures = [uploader.submit(client, f.path, f.sha256, f.examples, f.role, policy=policy)
                   for f in files.files()]
        try:
            uploaded = tuple(fut.result() for fut in futures)
        finally:  # a failed upload still leaves a whole generation: its pictures finish before the flow ends
            charts.wait(timeout=60)  # bounded: a stuck chart never holds the run

    result = PrepareResult(dataset=ref, split=plan, template=fmt.template.name, files=files, validation=report,
                           remote=settings.remote if uploaded else None, uploaded=uploaded,
                           upload_skipped_reason=skipped, project=project)
    publish_result(result, charts.result(), dashboard_links=settings.is_openai)
    return result
