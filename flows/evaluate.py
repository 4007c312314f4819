"""The evaluate flow: ask a model for the prices of test items and measure how close it gets.

Run it with ``ftprep evaluate --data test.pkl`` or from the Prefect UI (deployment ``evaluate-latest``).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.variables import Variable

from ftprep.client import make_client
from ftprep.errors import InputError, RemoteError
from ftprep.models import EvalMetrics
from ftprep.names import FLOW_EVALUATE, LATEST_MODEL
from ftprep.remote import RemotePolicy
from ftprep.settings import load_settings
from tasks.evaluate import metrics, parse_price, predict, report, test_items
from tasks.format import resolve_template
from tasks.load import load_dataset, new_store


@flow(name=FLOW_EVALUATE, persist_result=True, result_serializer="json")
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
        model = (Variable.get(LATEST_MODEL) or {}).get("fine_tuned_model")
        if not model:
            raise InputError(f"no fine-tuned model yet (Prefect Variable {LATEST_MODEL!r} is empty): run fine-tune "
                             "first, or pass --model")
        logger.info("Evaluating the latest fine-tuned model %s", model)
    settings = load_settings()
    client, policy, store = make_client(settings), RemotePolicy.from_settings(settings), new_store()
    conversations, truths = test_items(load_dataset(data, store), resolve_template(template), n, sample_seed, store)
    answers = predict(client, settings.remote, model, conversations, concurrency, policy=policy)
    answered = [(t, parse_price(a.text)) for t, a in zip(truths, answers, strict=True) if a is not None]
    if not answered:
        raise RemoteError(f"no item of {data} got an answer from {model}; see the warnings above")
    result = metrics(model, [t for t, _ in answered], [e for _, e in answered])
    result = result.model_copy(update={"failed": len(answers) - len(answered)})
    logger.info("%s on %s items: MAE $%.2f, RMSLE %.3f, hit rate %.1f%%", model, result.items, result.mae,
                result.rmsle, 100 * result.hit_rate)
    report(result, [t for t, _ in answered], [e for _, e in answered], out)
    return result
