"""The evaluate flow: ask the fine-tuned model for the prices of test items and measure how close it gets."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.variables import Variable

from ftprep.client import make_client
from ftprep.errors import InputError
from ftprep.models import EvalMetrics
from ftprep.settings import load_settings
from tasks.evaluate import metrics, parse_price, predict, report, test_items
from tasks.finetune import MODEL_VARIABLE
from tasks.format import resolve_template
from tasks.load import load_dataset


@flow(name="evaluate", persist_result=True, result_serializer="json")
def evaluate(
    data: str,
    out: str = "eval",
    model: str | None = None,
    n: int = 250,
    sample_seed: int | None = None,
    template: str = "course",
    concurrency: int = 8,
) -> EvalMetrics:
    """Evaluate a model on the first ``n`` test items (or a seeded sample) and write metrics.json and chart.png.

    Args:
        data: Test dataset (.pkl, .csv, .jsonl or .parquet) with prices.
        out: Folder for metrics.json and chart.png.
        model: Model to evaluate; default: the latest fine-tuned model (Prefect Variable ftprep_latest_model).
        n: How many items.
        sample_seed: Evaluate a seeded random sample of n items instead of the first n.
        template: The template the model was trained with (its messages minus the answer are sent).
        concurrency: Calls in flight at once.
    """
    logger = get_run_logger()
    if model is None:
        model = (Variable.get(MODEL_VARIABLE) or {}).get("fine_tuned_model")
        if not model:
            raise InputError(f"no fine-tuned model yet (Prefect Variable {MODEL_VARIABLE!r} is empty): run fine-tune "
                             "first, or pass --model")
        logger.info("Evaluating the latest fine-tuned model %s", model)
    settings = load_settings()
    client = make_client(settings)
    conversations, truths = test_items(load_dataset(data), resolve_template(template), n, sample_seed)
    replies = predict(client, model, conversations, concurrency, attempts=1 + settings.upload_retries,
                      retry_base=settings.retry_base_seconds)
    estimates = [parse_price(r) for r in replies]
    result = metrics(model, truths, estimates)
    logger.info("%s on %s items: MAE $%.2f, RMSLE %.3f, hit rate %.1f%%", model, result.items, result.mae,
                result.rmsle, 100 * result.hit_rate)
    report(result, truths, estimates, out)
    return result
