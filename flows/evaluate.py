"""The evaluate flow: did fine-tuning pay off? Several models and a no-API baseline on the same test items.

Run it with ``ftprep evaluate --data test.pkl`` (the latest fine-tuned model and its base) or
``ftprep evaluate --data test.pkl --model A --model B``, or from the Prefect UI (deployment ``evaluate-latest``).
Every answer is kept in Prefect's result storage under its content, so a rerun, a retry or a comparison with one
more model asks only what was never answered.
"""

from __future__ import annotations

from typing import Annotated

from prefect import get_run_logger
from pydantic import Field

from ftprep.client import make_client
from ftprep.errors import InputError
from ftprep.models import Comparison
from ftprep.names import FLOW_EVALUATE, LATEST_MODEL, ProjectParameter, project_of, project_option, variable_name
from ftprep.openai_models import INFERENCE_PRICES_AS_OF
from ftprep.remote import RemotePolicy
from ftprep.results import flow_storage
from ftprep.settings import load_settings
from ftprep.steps import flow
from ftprep.storage import name, normalize
from tasks.evaluate import (
    baseline,
    baseline_metrics,
    estimates_of,
    job_models,
    latest_job,
    predict,
    prompt_digest,
    score,
    test_items,
    trained_on_note,
)
from tasks.evaluation_report import report
from tasks.format import resolve_template
from tasks.load import load_dataset, new_store, read_here


@flow(name=FLOW_EVALUATE, persist_result=True, result_serializer="json", result_storage=flow_storage())
def evaluate(
    data: str,
    out: str = "eval",
    models: list[str] | None = None,
    n: Annotated[int, Field(ge=1)] = 250,
    sample_seed: int | None = None,
    template: str = "course",
    concurrency: Annotated[int, Field(ge=1)] = 8,
    project: ProjectParameter = None,
) -> Comparison:
    """Compare models (and a no-API baseline) on the first ``n`` test items (or a seeded sample); write
    comparison.json and comparison.png.

    Args:
        data: Test dataset (.pkl, .csv, .jsonl or .parquet) with prices: a path or a URL (s3://bucket/key).
        out: Folder for comparison.json and comparison.png: a path or a URL (s3://bucket/prefix).
        models: Models to compare (repeat --model); default: the latest fine-tuned model and its base model
            (Prefect Variable ftprep_latest_model).
        n: How many items.
        sample_seed: Evaluate a seeded random sample of n items instead of the first n.
        template: The template the models were trained with (its messages minus the answer are sent).
        concurrency: Calls in flight at once.
        project: Compare the latest fine-tuned model of this project (and find its training data through the
            project's latest prepare run); default: FTPREP_PROJECT, else 'default' (the plain names).
    """
    logger = get_run_logger()
    settings = load_settings()
    project = project_of(project, settings.project)
    latest = variable_name(LATEST_MODEL, project)
    job = latest_job(required=not models, project=project)
    if not models:
        if job is None:
            raise InputError(f"no fine-tuned model yet (Prefect Variable {latest!r} is empty): run fine-tune"
                             f"{project_option(project)} "
                             "first, or pass --model")
        models = job_models(job)
        logger.info("Comparing the latest fine-tuned model %s with its base model %s", *models)
    models = list(dict.fromkeys(models))  # each model once, in the order given
    client, policy, store = make_client(settings), RemotePolicy.from_settings(settings), new_store()
    data = normalize(data, "--data")  # an absolute path or a URL (s3://...)
    out = normalize(out, "--out") if "://" in out else out
    ref = read_here(load_dataset(data, store), data, store)
    conversations, truths = test_items(ref, resolve_template(template), n, sample_seed, store)

    # the baseline needs the job the models came from: its training file leads to the training prices
    from_job = job if job is not None and job["fine_tuned_model"] in models else None
    asked = [prompt_digest(c) for c in conversations]
    mean, note, seen = (baseline(from_job["training_file"], project, asked)
                        if from_job and from_job.get("training_file") else
                        (None, "baseline left out: no model in the comparison came from a known fine-tuning job (the "
                               f"latest one, in Prefect Variable {latest!r}, made "
                               f"{job['fine_tuned_model'] if job else 'none yet'})", None))
    logger.info(note)
    trained_on = trained_on_note(seen, len(conversations), data)
    if trained_on:
        logger.warning("%s", trained_on)

    rows, panels = [], []
    for model in models:
        predictions = predict(client, settings.remote, model, conversations, concurrency, policy=policy)
        row = score(truths, predictions)
        rows.append(row)
        if row.items:
            answered = [t for t, a in zip(truths, predictions.answers, strict=True) if a is not None]
            panels.append((model, answered, estimates_of(predictions)))
        logger.info("%s: %s", model, f"MAE ${row.mae:,.2f}, hit rate {row.hit_rate:.1%} on {row.items} items"
                    if row.items else f"no answer ({row.error})")
    if mean is not None:
        rows.append(baseline_metrics("baseline: training mean", mean, truths))
        panels.append(("baseline: training mean", truths, [mean] * len(truths)))

    comparison = Comparison(data=data, items=len(truths), sample_seed=sample_seed, rows=tuple(rows),
                            job_id=from_job.get("job_id") if from_job else None, baseline=note, trained_on=trained_on,
                            prices_as_of=INFERENCE_PRICES_AS_OF, project=project)
    report(comparison, panels, out, f"{len(truths)} items of {name(data)}; answers from {settings.remote}")
    return comparison
