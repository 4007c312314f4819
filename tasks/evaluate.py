"""Evaluate: ask a model for the price of test items and measure how close it gets.

Pure part: :func:`prompt_messages` (the training messages without the answer), :func:`parse_price`,
:func:`metrics` (mean absolute error, root mean squared log error, hit rate: within $40 or 20%, as the
course's tester colours an estimate green) and :func:`scatter_chart`. Tasks: :func:`ask` is one chat call,
cached by content (endpoint, model, messages, generation parameters) in Prefect's result storage, so an answer
already paid for is never requested again, with the remote policy's retries; :func:`predict` runs one
``ask`` per item, ``concurrency`` at a time; :func:`report` writes metrics.json and chart.png.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import openai
import orjson
from openai import OpenAI
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ftprep.errors import RemoteError
from ftprep.fsio import atomic_write
from ftprep.models import Answer, DatasetRef, EvalMetrics, Template
from ftprep.names import ARTIFACT_EVALUATION, CHART, METRICS
from ftprep.records import RecordStore
from ftprep.remote import DEFAULT_POLICY, RemotePolicy, as_remote_error
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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write(path, buffer.getvalue())


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
@task(name="test-items", cache_policy=NO_CACHE)
def test_items(data: DatasetRef, template: Template, n: int, seed: int | None, store: RecordStore,
               price_field: str = "price") -> tuple[list[list[dict[str, str]]], list[float]]:
    """The conversations to send (training messages minus the answer) and the true prices."""
    from ftprep.errors import InputError

    records = store.read(data.path, data.sha256)
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


def answer_key(endpoint: str, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """The content an answer depends on: where it was asked, which model, the messages, generation parameters."""
    canonical = orjson.dumps({"endpoint": endpoint, "model": model, "messages": messages, "params": params},
                             option=orjson.OPT_SORT_KEYS)
    return "ftprep-answer-" + hashlib.sha256(canonical).hexdigest()


def _answer_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    return answer_key(parameters["endpoint"], parameters["model"], parameters["messages"], parameters["params"])


@task(name="ask", task_run_name="ask-{model}-item-{item}", cache_key_fn=_answer_cache_key, persist_result=True,
      result_serializer="json", **DEFAULT_POLICY.task_options())
def ask(client: OpenAI, endpoint: str, model: str, messages: list[dict[str, str]], params: dict[str, Any],
        item: int) -> Answer:
    """One chat completion, kept in Prefect's result storage under its content key (never paid for twice)."""
    started = time.perf_counter()
    try:
        reply = client.chat.completions.create(model=model, messages=messages, **params)
    except openai.APIError as e:
        raise as_remote_error(f"item {item}: chat completion with {model}", e) from None
    latency = time.perf_counter() - started
    if not reply.choices:
        raise RemoteError(f"item {item}: {model} answered with no choices; the item is left out of the metrics")
    usage = reply.usage
    return Answer(text=reply.choices[0].message.content or "", latency_seconds=round(latency, 4),
                  prompt_tokens=usage.prompt_tokens if usage else 0,
                  completion_tokens=usage.completion_tokens if usage else 0)


@task(name="predict", cache_policy=NO_CACHE)
def predict(client: OpenAI, endpoint: str, model: str, conversations: list[list[dict[str, str]]],
            concurrency: int = 8, seed: int = 42, policy: RemotePolicy = DEFAULT_POLICY) -> list[Answer | None]:
    """One :func:`ask` per conversation, ``concurrency`` at a time; None for an item that failed for good."""
    from prefect.task_runners import ThreadPoolTaskRunner

    logger = get_run_logger()
    params = {"seed": seed, "max_completion_tokens": 16}
    asker = ask.with_options(**policy.task_options())
    answers: list[Answer | None] = []
    with ThreadPoolTaskRunner(max_workers=max(1, concurrency)) as runner:
        futures = [runner.submit(asker, parameters={"client": client, "endpoint": endpoint, "model": model,
                                                    "messages": messages, "params": params, "item": i})
                   for i, messages in enumerate(conversations)]
        for i, future in enumerate(futures):
            future.wait()
            state = future.state
            if state.is_completed():
                answers.append(future.result())
            else:
                answers.append(None)
                logger.warning("Item %s: no answer from %s: %s", i, model, state.message or state.name)
    failed = sum(a is None for a in answers)
    logger.info("%s answers from %s%s", len(answers) - failed, model, f"; {failed} item(s) failed" if failed else "")
    return answers


@task(name="report")
def report(result: EvalMetrics, truths: list[float], estimates: list[float | None], out_dir: str) -> dict[str, str]:
    """metrics.json and chart.png in ``out_dir``, and a markdown artifact with both."""
    from prefect.artifacts import create_markdown_artifact

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = atomic_write(out / METRICS, json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
    title = f"{result.model}: MAE ${result.mae:,.2f}, RMSLE {result.rmsle:.2f}, hits {result.hit_rate:.1%}"
    chart = scatter_chart(out / CHART, truths, estimates, title)
    image = base64.b64encode(chart.read_bytes()).decode()
    create_markdown_artifact(
        key=ARTIFACT_EVALUATION,
        markdown=(f"# Evaluation of `{result.model}` on {result.items} items\n\n| metric | value |\n|---|---|\n"
                  f"| mean absolute error | ${result.mae:,.2f} |\n| RMSLE | {result.rmsle:.3f} |\n"
                  f"| hit rate (within $40 or 20%) | {result.hit_rate:.1%} |\n"
                  f"| unparsed replies | {result.unparsed} |\n"
                  f"\n![truth against estimate](data:image/png;base64,{image})\n"),
        description=f"Evaluation of {result.model}",
    )
    get_run_logger().info("Wrote %s and %s", metrics_path, chart)
    return {"metrics": str(metrics_path), "chart": str(chart)}
