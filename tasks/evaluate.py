"""Evaluate: ask models for the price of test items, score each one, and a no-API baseline to compare with.

Pure part: :func:`prompt_messages` (the training messages without the answer), :func:`parse_price`,
:func:`metrics` (mean absolute error, root mean squared log error, hit rate: within $40 or 20%, as the
course's tester colours an estimate green), :func:`score` (a model's metrics with its failures, tokens, cost and
latency) and :func:`read_training` (the baseline's constant estimate, and the prompts a test item must not
repeat). Tasks: :func:`ask` is one chat call,
cached by content (endpoint, model, messages, generation parameters) in Prefect's result storage as soon as it
is answered, so an answer already paid for is never requested again, with the remote policy's retries;
:func:`predict` (called by the flow) runs one ``ask`` per item, ``concurrency`` at a time; :func:`latest_job`
and :func:`baseline` find what the models were fine-tuned from.
"""

from __future__ import annotations

import hashlib
import math
import re
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import openai
import orjson
from openai import OpenAI
from prefect import get_run_logger
from prefect.cache_policies import NO_CACHE

from ftprep import storage
from ftprep.errors import InputError, ModelUnavailable, RemoteError
from ftprep.limits import slot
from ftprep.models import Answer, DatasetRef, EvalMetrics, Predictions, Template
from ftprep.names import DEFAULT_PROJECT, LATEST_FILES, LATEST_MODEL, variable_name
from ftprep.numeric import NumericError, check_number
from ftprep.openai_models import inference_cost
from ftprep.progress import bar
from ftprep.records import RecordStore, take
from ftprep.remote import DEFAULT_POLICY, RemotePolicy, as_remote_error
from ftprep.steps import task
from tasks.format import compile_template
from tasks.validation_line import digest

HIT_DOLLARS, HIT_SHARE = 40.0, 0.2
NEAR_DOLLARS, NEAR_SHARE = 80.0, 0.4
_NUMBER = re.compile(r"[-+]?\d*\.\d+|\d+")
GENERATION = {"seed": 42, "max_completion_tokens": 16}
# The server refused the model itself, not one item: asking the other items would fail the same way.
_MODEL_REFUSALS = (openai.NotFoundError, openai.AuthenticationError, openai.PermissionDeniedError)


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


def band(truth: float, estimate: float) -> str:
    """The course's colour of an estimate: green (a hit), orange (within $80 or 40%), red (worse)."""
    error = abs(estimate - truth)
    if is_hit(truth, estimate):
        return "green"
    return "orange" if error < NEAR_DOLLARS or (truth > 0 and error / truth < NEAR_SHARE) else "red"


def metrics(model: str, truths: Sequence[float], estimates: Sequence[float | None]) -> EvalMetrics:
    """MAE, RMSLE and hit rate of ``estimates`` (None: a reply with no number, counted as $0)."""
    guesses = [e if e is not None else 0.0 for e in estimates]
    n = len(truths)
    if n == 0:
        return EvalMetrics(model=model, items=0)
    errors = [abs(g - t) for g, t in zip(guesses, truths, strict=True)]
    sle = [(math.log(max(t, 0) + 1) - math.log(max(g, 0) + 1)) ** 2 for g, t in zip(guesses, truths, strict=True)]
    hits = sum(is_hit(t, g) for g, t in zip(guesses, truths, strict=True))
    return EvalMetrics(model=model, items=n, mae=sum(errors) / n, rmsle=math.sqrt(sum(sle) / n), hit_rate=hits / n,
                       unparsed=sum(e is None for e in estimates))


def estimates_of(predictions: Predictions) -> list[float | None]:
    """Each answered item's estimate (None for no number), answered items only, in item order."""
    return [parse_price(a.text) for a in predictions.answers if a is not None]


def score(truths: Sequence[float], predictions: Predictions) -> EvalMetrics:
    """A model's row: metrics on its answered items, the count and first message of its failed items, its tokens,
    its cost where the price table knows the model, and its median latency."""
    answered = [(t, a) for t, a in zip(truths, predictions.answers, strict=True) if a is not None]
    result = metrics(predictions.model, [t for t, _ in answered], estimates_of(predictions))
    prompt = sum(a.prompt_tokens for _, a in answered)
    completion = sum(a.completion_tokens for _, a in answered)
    errors = [e for e in predictions.errors if e]
    return result.model_copy(update={
        "failed": len(truths) - len(answered),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": inference_cost(predictions.model, prompt, completion) if answered else None,
        "median_latency_seconds": statistics.median(a.latency_seconds for _, a in answered) if answered else None,
        "error": predictions.refused or (errors[0] if errors else None),
    })


def baseline_metrics(name: str, mean: float, truths: Sequence[float]) -> EvalMetrics:
    """The no-API baseline: the same estimate (the training data's mean price) for every item."""
    return metrics(name, truths, [mean] * len(truths)).model_copy(update={"kind": "baseline"})


def prompt_digest(messages: Sequence[Mapping[str, Any]]) -> bytes:
    """What makes a test item the same as a training example: its user messages' text (as validation's leakage
    check compares a pair's prompts)."""
    return digest("\x00".join(m["content"] for m in messages if m.get("role") == "user"
                              and isinstance(m.get("content"), str)).encode())


def trained_on_note(seen: int | None, items: int, data: str) -> str | None:
    """The warning when the fine-tuned model was trained on some of the test items (its scores then overstate it)."""
    if not seen:
        return None
    return (f"{seen:,} of the {items:,} test items of {data} are in the fine-tuned model's training data (the same "
            "user message): its scores on them overstate it; evaluate on held-out items (a test file of records the "
            "training split did not take)")


class TrainingSet(NamedTuple):
    mean: float  # the mean target value the model was taught
    count: int  # examples whose answer holds a number
    prompts: frozenset[bytes]  # every example's prompt_digest


def read_training(path: str | Path) -> TrainingSet:
    """The mean target value of a chat fine-tuning JSONL file (the first number of each example's assistant
    answer: the price the model was taught), how many examples had one, and every example's prompt digest."""
    values, prompts = [], set()
    with storage.open_read(path) as f:
        for line in f:
            if not line.strip():
                continue
            messages = orjson.loads(line).get("messages") or []
            prompts.add(prompt_digest(messages))
            answer = next((m.get("content") for m in reversed(messages) if m.get("role") == "assistant"), None)
            value = parse_price(answer) if isinstance(answer, str) else None
            if value is not None:
                values.append(value)
    if not values:
        raise InputError(f"{path}: no assistant answer holds a number; the baseline needs the training prices")
    return TrainingSet(sum(values) / len(values), len(values), frozenset(prompts))


def pick(total: int, n: int, seed: int | None) -> list[int]:
    """The first ``n`` positions, or a seeded sample of ``n`` when ``seed`` is given."""
    if n <= 0:
        raise InputError(f"--n is {n}: give a positive number of items to evaluate")
    if n > total:
        raise InputError(f"--n is {n} but the test data has {total:,} items; lower --n")
    if seed is None:
        return list(range(n))
    import random

    return sorted(random.Random(seed).sample(range(total), n))


def answer_key(endpoint: str, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """The content an answer depends on: where it was asked, which model, the messages, generation parameters."""
    canonical = orjson.dumps({"endpoint": endpoint, "model": model, "messages": messages, "params": params},
                             option=orjson.OPT_SORT_KEYS)
    return "ftprep-answer-" + hashlib.sha256(canonical).hexdigest()


# ----------------------------------------------------------------------------------------------- tasks
@task(name="test-items", cache_policy=NO_CACHE)
def test_items(data: DatasetRef, template: Template, n: int, seed: int | None, store: RecordStore,
               price_field: str = "price") -> tuple[list[list[dict[str, str]]], list[float]]:
    """The conversations to send (training messages minus the answer) and the true prices (finite, not negative,
    not boolean: the one numeric check prepare uses)."""
    records = store.read(data.path, data.sha256)
    chosen = pick(len(records), n, seed)
    batch = take(records, chosen)  # a file-backed dataset reads them in one pass
    conversations, truths = [], []
    for i in chosen:
        record = batch[i]
        try:
            truth = float(check_number(record.get(price_field), nonnegative=True))
        except NumericError as e:
            raise InputError(f"{data.path}: item {i}: {price_field!r} {e.problem}; test prices must be numbers of "
                             "zero or more") from None
        conversations.append(prompt_messages(template, record, i))
        truths.append(truth)
    get_run_logger().info("Evaluating on %s items of %s (%s)", len(chosen), data.path,
                          "first items" if seed is None else f"seeded sample, seed {seed}")
    return conversations, truths


def _answer_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    return answer_key(parameters["endpoint"], parameters["model"], parameters["messages"], parameters["params"])


@task(name="ask", task_run_name="ask-{model}-item-{item}", cache_key_fn=_answer_cache_key, persist_result=True,
      result_serializer="json", **DEFAULT_POLICY.task_options())
def ask(client: OpenAI, endpoint: str, model: str, messages: list[dict[str, str]], params: dict[str, Any],
        item: int, policy: RemotePolicy = DEFAULT_POLICY) -> Answer:
    """One chat completion, kept in Prefect's result storage under its content key (never paid for twice).

    Prefect writes the result when this task run completes, not when the flow ends, so a killed evaluation keeps
    every answer that arrived. Failures are not cached: a rerun asks again only for the items with no answer.
    """
    try:
        with slot(policy):  # the shared OpenAI limits, when configured
            started = time.perf_counter()
            reply = client.chat.completions.create(model=model, messages=messages, **params)
    except _MODEL_REFUSALS as e:
        raise ModelUnavailable(str(as_remote_error(f"chat completion with {model}", e))) from None
    except openai.APIError as e:
        raise as_remote_error(f"item {item}: chat completion with {model}", e) from None
    latency = time.perf_counter() - started
    if not reply.choices:
        raise RemoteError(f"item {item}: {model} answered with no choices; the item is left out of the metrics")
    usage = reply.usage
    return Answer(text=reply.choices[0].message.content or "", latency_seconds=round(latency, 4),
                  prompt_tokens=usage.prompt_tokens if usage else 0,
                  completion_tokens=usage.completion_tokens if usage else 0)


def _outcome(future: Any) -> tuple[Answer | None, BaseException | None]:
    future.wait()
    state = future.state
    if state.is_completed():
        return future.result(), None
    exc = state.result(raise_on_failure=False)
    return None, exc if isinstance(exc, BaseException) else RemoteError(state.message or state.name)


def predict(client: OpenAI, endpoint: str, model: str, conversations: list[list[dict[str, str]]],
            concurrency: int = 8, policy: RemotePolicy = DEFAULT_POLICY) -> Predictions:
    """One :func:`ask` per conversation, ``concurrency`` at a time; None for an item that failed for good.

    Deliberately not a task, but called by the flow: a task run inside another task joins that task's
    transaction, and Prefect writes its cache record only when the outer task ends, so a killed run would lose
    every answer. Called from the flow, each ``ask`` writes its answer the moment it completes.

    The first item is asked alone: when the server refuses the model itself (unknown model, no access), the
    other items are not sent and the model's row carries the server's message.
    """
    from prefect.task_runners import ThreadPoolTaskRunner

    logger = get_run_logger()
    asker = ask.with_options(**policy.task_options())
    answers: list[Answer | None] = []
    errors: list[str | None] = []

    def keep(i: int, answer: Answer | None, exc: BaseException | None) -> None:
        answers.append(answer)
        errors.append(None if exc is None else str(exc))
        if exc is not None:
            logger.warning("Item %s: no answer from %s: %s", i, model, exc)

    with ThreadPoolTaskRunner(max_workers=max(1, concurrency)) as runner:
        def submit(i: int) -> Any:
            return runner.submit(asker, parameters={"client": client, "endpoint": endpoint, "model": model,
                                                    "messages": conversations[i], "params": GENERATION, "item": i,
                                                    "policy": policy})

        answer, exc = _outcome(submit(0))
        if isinstance(exc, ModelUnavailable):
            logger.warning("%s is not available: %s; its other items are not sent", model, exc)
            return Predictions(model=model, answers=(None,) * len(conversations),
                               errors=(str(exc),) * len(conversations), refused=str(exc))
        keep(0, answer, exc)
        futures = [submit(i) for i in range(1, len(conversations))]
        with bar(f"asking {model}", len(conversations)) as show:
            for i, future in enumerate(futures, start=1):
                keep(i, *_outcome(future))
                show(i + 1)
    failed = sum(a is None for a in answers)
    logger.info("%s answers from %s%s", len(answers) - failed, model, f"; {failed} item(s) failed" if failed else "")
    return Predictions(model=model, answers=tuple(answers), errors=tuple(errors))


@task(name="latest-job", cache_policy=NO_CACHE)
def latest_job(required: bool = True, project: str = DEFAULT_PROJECT) -> dict[str, Any] | None:
    """The project's latest successful fine-tuning job (Prefect Variable ftprep_latest_model), or None when there
    is none.

    A Variable that holds no job is an error when the models come from it (``required``), else a warning.
    """
    from prefect.variables import Variable

    name = variable_name(LATEST_MODEL, project)
    job = Variable.get(name)
    if job is None:
        return None
    fields = ("fine_tuned_model", "model")
    if not isinstance(job, dict) or not all(isinstance(job.get(f), str) and job[f] for f in fields):
        problem = (f"Prefect Variable {name!r} does not hold a fine-tuning job with {' and '.join(fields)}: "
                   f"run ftprep fine-tune to set it, or unset it (prefect variable unset {name}) and pass --model")
        if required:
            raise InputError(problem)
        get_run_logger().warning("%s; comparing the models given, with no baseline", problem)
        return None
    return job


@task(name="baseline", cache_policy=NO_CACHE)
def baseline(training_file: str, project: str = DEFAULT_PROJECT,
             asked: Sequence[bytes] = ()) -> tuple[float | None, str, int | None]:
    """The mean price of the training data behind ``training_file`` (an OpenAI file id), found through the
    project's latest prepare run (Prefect Variable ftprep_latest_files: its file ids, local paths and sha256), or
    why not; and how many of the test items (``asked``: their :func:`prompt_digest`) the model was trained on
    (None: unknown, the training data is not at hand)."""
    from prefect.variables import Variable

    name = variable_name(LATEST_FILES, project)
    files = Variable.get(name)
    files = files if isinstance(files, dict) else {}
    path, digest = files.get("train_path"), files.get("train_sha256")
    if files.get("train_file_id") != training_file:
        return None, (f"baseline left out: the job's training file {training_file} is not the latest prepared one "
                      f"(Prefect Variable {name!r}), so its prices are not at hand"), None
    try:
        gone = not path or bool(digest and storage.sha256(path) != digest)
    except (OSError, ValueError, InputError):
        gone = True
    if gone:
        where = path or "a path the latest prepare run did not record"
        return None, (f"baseline left out: the training file {training_file} was written to {where}, which is gone "
                      "or changed since; run prepare again"), None
    mean, count, prompts = read_training(path)
    get_run_logger().info("Baseline: the mean training price $%.2f of %s examples in %s", mean, count, path)
    seen = sum(d in prompts for d in asked)
    return (mean, f"baseline: the mean training price (${mean:,.2f}) of the {count:,} examples in {training_file}",
            seen)


def job_models(job: dict[str, Any]) -> list[str]:
    """The models a job compares by default: the fine-tuned one and the model it was fine-tuned from."""
    return [job["fine_tuned_model"], job["model"]]
