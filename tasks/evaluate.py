"""Evaluate: ask a model for the price of test items and measure how close it gets.

Pure part: :func:`prompt_messages` (the training messages without the answer), :func:`parse_price`,
:func:`metrics` (mean absolute error, root mean squared log error, hit rate: within $40 or 20%, as the
course's tester colours an estimate green) and :func:`scatter_chart`. Tasks: :func:`predict` calls the
model for every item, concurrently with a limit and with the uploads' retry policy; :func:`report`
writes metrics.json and chart.png and shows both in an artifact.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from openai import OpenAI
from prefect import get_run_logger, task

from ftprep.models import DatasetRef, EvalMetrics, Template
from tasks.finetune import call
from tasks.format import compile_template

HIT_DOLLARS, HIT_SHARE = 40.0, 0.2
_NUMBER = re.compile(r"[-+]?\d*\.\d+|\d+")


def prompt_messages(template: Template, record: Mapping[str, Any], position: int) -> list[dict[str, str]]:
    """The messages the model was trained on for this record, minus the assistant's answer."""
    line = compile_template(template.model_copy(update={"assistant": ""}))(record, position)
    return [m for m in orjson.loads(line)["messages"] if m["role"] != "assistant"]


def parse_price(reply: str | None) -> float | None:
    """The first number in a reply ("Price is $1,299.99" → 1299.99), or None."""
    match = _NUMBER.search((reply or "").replace("$", "").replace(",", ""))
    return float(match.group()) if match else None


def is_hit(truth: float, estimate: float) -> bool:
    error = abs(estimate - truth)
    return error < HIT_DOLLARS or (truth > 0 and error / truth < HIT_SHARE)


def metrics(model: str, truths: Sequence[float], estimates: Sequence[float | None]) -> EvalMetrics:
    guesses = [e if e is not None else 0.0 for e in estimates]
    n = len(truths)
    errors = [abs(g - t) for g, t in zip(guesses, truths, strict=True)]
    sle = [(math.log(max(t, 0) + 1) - math.log(max(g, 0) + 1)) ** 2 for g, t in zip(guesses, truths, strict=True)]
    hits = sum(is_hit(t, g) for g, t in zip(guesses, truths, strict=True))
    return EvalMetrics(model=model, items=n, mae=sum(errors) / n, rmsle=math.sqrt(sum(sle) / n), hit_rate=hits / n,
                       unparsed=sum(e is None for e in estimates))


def scatter_chart(path: Path, truths: Sequence[float], estimates: Sequence[float | None], title: str) -> Path:
    """Truth against estimate, coloured by error (green: a hit; orange: within $80 or 40%; red: worse)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    guesses = [e if e is not None else 0.0 for e in estimates]

    def colour(t: float, g: float) -> str:
        error = abs(g - t)
        if is_hit(t, g):
            return "green"
        return "orange" if error < 80 or (t > 0 and error / t < 0.4) else "red"

    fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
    top = max([*truths, *guesses, 1.0])
    ax.plot([0, top], [0, top], color="deepskyblue", lw=1.5, alpha=0.6)
    ax.scatter(truths, guesses, s=6, c=[colour(t, g) for t, g in zip(truths, guesses, strict=True)])
    ax.set(xlabel="Ground truth ($)", ylabel="Model estimate ($)", xlim=(0, top), ylim=(0, top), title=title)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def pick(total: int, n: int, seed: int | None) -> list[int]:
    """The first ``n`` positions, or a seeded sample of ``n`` when ``seed`` is given."""
    from ftprep.errors import InputError

    if n <= 0:
        raise InputError(f"--n is {n}: give a positive number of items to evaluate")
    if n > total:
        raise InputError(f"--n is {n} but the test data has {total:,} items; lower --n")
    if seed is None:
        return list(range(n))
    import random

    return sorted(random.Random(seed).sample(range(total), n))


# ----------------------------------------------------------------------------------------------- tasks
@task(name="test-items")
def test_items(data: DatasetRef, template: Template, n: int, seed: int | None,
               price_field: str = "price") -> tuple[list[list[dict[str, str]]], list[float]]:
    """The conversations to send (training messages minus the answer) and the true prices."""
    from ftprep.errors import InputError
    from tasks.load import records_for

    records = records_for(data)
    chosen = pick(len(records), n, seed)
    conversations, truths = [], []
    for i in chosen:
        record = records[i]
        truth = record.get(price_field)
        if not isinstance(truth, (int, float)) or not math.isfinite(truth):
            raise InputError(f"{data.path}: item {i} has no numeric {price_field!r}; give test data with prices")
        conversations.append(prompt_messages(template, record, i))
        truths.append(float(truth))
    get_run_logger().info("Evaluating on %s items of %s (%s)", len(chosen), data.path,
                          "first items" if seed is None else f"seeded sample, seed {seed}")
    return conversations, truths


@task(name="predict")
def predict(client: OpenAI, model: str, conversations: list[list[dict[str, str]]], concurrency: int = 8,
            seed: int = 42, attempts: int = 5, retry_base: float = 2.0) -> list[str]:
    """The model's reply to each conversation, ``concurrency`` calls at a time, transient failures retried."""
    logger = get_run_logger()

    def ask(i: int) -> str:
        reply = call(lambda: client.chat.completions.create(model=model, messages=conversations[i], seed=seed,
                                                             max_completion_tokens=16),
                     f"item {i}: chat completion with {model}", attempts, retry_base, logger)
        return reply.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        replies = list(pool.map(ask, range(len(conversations))))
    logger.info("%s replies from %s", len(replies), model)
    return replies


@task(name="report")
def report(result: EvalMetrics, truths: list[float], estimates: list[float | None], out_dir: str) -> dict[str, str]:
    """metrics.json and chart.png in ``out_dir``, and a markdown artifact with both."""
    from prefect.artifacts import create_markdown_artifact

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    tmp = metrics_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
    tmp.replace(metrics_path)
    title = f"{result.model}: MAE ${result.mae:,.2f}, RMSLE {result.rmsle:.2f}, hits {result.hit_rate:.1%}"
    chart = scatter_chart(out / "chart.png", truths, estimates, title)
    image = base64.b64encode(chart.read_bytes()).decode()
    create_markdown_artifact(
        key="ftprep-evaluation",
        markdown=(f"# Evaluation of `{result.model}` on {result.items} items\n\n| metric | value |\n|---|---|\n"
                  f"| mean absolute error | ${result.mae:,.2f} |\n| RMSLE | {result.rmsle:.3f} |\n"
                  f"| hit rate (within $40 or 20%) | {result.hit_rate:.1%} |\n"
                  f"| unparsed replies | {result.unparsed} |\n"
                  f"\n![truth against estimate](data:image/png;base64,{image})\n"),
        description=f"Evaluation of {result.model}",
    )
    get_run_logger().info("Wrote %s and %s", metrics_path, chart)
    return {"metrics": str(metrics_path), "chart": str(chart)}
