"""Evaluation under failures, through the real SDK to the stub: failed items are left out and asked again on the
next run only, empty replies do not crash, bad test prices are refused, a killed run loses no answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.evaluate import evaluate
from tests.openai_stub import ChatError

pytestmark = pytest.mark.usefixtures("prefect_server")
FTPREP = str(Path(sys.executable).parent / "ftprep")
PRICES = {"Kettle 2L": 20.0, "Desk lamp": 100.0, "Cordless drill": 300.0, "Oak chair": 60.0}


def items(path: Path, prices: dict[str, object] = PRICES) -> str:
    with open(path, "w") as f:
        for title, price in prices.items():
            f.write(json.dumps({"prompt": f"How much does this cost to the nearest dollar?\n\n{title}\n\nPrice is $1",
                                "price": price}) + "\n")
    return str(path)


def title(messages) -> str:
    return messages[-1]["content"].split("\n\n")[1]


def test_one_permanently_failing_item_is_left_out_and_asked_again_next_time(tmp_path, openai_env):
    def reply(messages, model):
        if title(messages) == "Desk lamp":
            raise ChatError(400, "Invalid prompt: this item was flagged.", code="invalid_prompt")
        return "Price is $" + str(PRICES[title(messages)] + 10)

    openai_env.chat_replies = {"gpt-4o-mini": reply}
    data = items(tmp_path / "test.jsonl")
    first = evaluate(data=data, out=str(tmp_path / "eval"), models=["gpt-4o-mini"], n=4)
    (row,) = first.rows
    assert (row.items, row.failed, row.mae) == (3, 1, pytest.approx(10.0))  # the other three scored
    assert "item 1" in row.error and "Invalid prompt: this item was flagged." in row.error
    assert openai_env.chat_count() == 4  # a 400 is not retried

    openai_env.chat_replies = {}  # the server accepts the item now: only it is asked again
    second = evaluate(data=data, out=str(tmp_path / "eval"), models=["gpt-4o-mini"], n=4)
    assert openai_env.chat_count() == 5 and second.rows[0].items == 4 and second.rows[0].failed == 0


def test_transient_failures_are_retried_per_item(tmp_path, openai_env):
    openai_env.inject("POST", "/v1/chat/completions", "status", status=503, times=2)
    comparison = evaluate(data=items(tmp_path / "test.jsonl"), out=str(tmp_path / "eval"), models=["gpt-4o-mini"],
                          n=4, concurrency=1)
    assert comparison.rows[0].items == 4 and openai_env.chat_count() == 6  # 4 items + 2 retried attempts


def test_a_reply_with_no_choices_is_a_failed_item_not_a_crash(tmp_path, openai_env):
    openai_env.chat_replies = {"gpt-4o-mini": lambda m, model: None if title(m) == "Oak chair" else "$50"}
    comparison = evaluate(data=items(tmp_path / "test.jsonl"), out=str(tmp_path / "eval"), models=["gpt-4o-mini"],
                          n=4)
    row = comparison.rows[0]
    assert (row.items, row.failed) == (3, 1) and "answered with no choices" in row.error


@pytest.mark.parametrize("bad, problem", [(-5.0, "'price' is negative (-5.0)"), (True, "'price' is a boolean")])
def test_negative_or_boolean_test_prices_are_refused(tmp_path, openai_env, bad, problem):
    data = items(tmp_path / "test.jsonl", {**PRICES, "Cordless drill": bad})
    state = evaluate(data=data, out=str(tmp_path / "eval"), models=["gpt-4o-mini"], n=4, return_state=True)
    assert state.is_failed() and f"item 2: {problem}" in state.message and "\n" not in state.message
    assert openai_env.chat_count() == 0


def test_a_malformed_latest_model_variable_is_one_line(tmp_path, openai_env):
    from prefect.variables import Variable

    saved = Variable.get("ftprep_latest_model")
    Variable.set("ftprep_latest_model", "ft:gpt-4o-mini:just-a-name", overwrite=True)
    try:
        data = items(tmp_path / "test.jsonl")
        state = evaluate(data=data, out=str(tmp_path / "eval"), n=4, return_state=True)
        assert state.is_failed() and "Prefect Variable 'ftprep_latest_model' does not hold a fine-tuning job" in (
            state.message) and "\n" not in state.message
        # with the models given, the Variable only decides the baseline: compared, with a warning
        given = evaluate(data=data, out=str(tmp_path / "eval"), models=["gpt-4o-mini"], n=4)
        assert [r.model for r in given.rows] == ["gpt-4o-mini"] and "baseline left out" in given.baseline
    finally:
        if saved is None:
            Variable.unset("ftprep_latest_model")
        else:
            Variable.set("ftprep_latest_model", saved, overwrite=True)


# ----------------------------------------------------------------------------------- through the command
def cli(env: dict[str, str], cwd: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([FTPREP, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180, **kw)


def answers_on_disk() -> set[str]:
    """The answers kept whole in Prefect's result storage. Prefect writes a record in place, so a process killed
    mid-write leaves a cut record, which Prefect reads as no record (the call is asked again): not counted."""
    from prefect.settings import get_current_settings

    storage = Path(get_current_settings().results.local_storage_path)
    kept = set()
    for path in storage.glob("ftprep-answer-*") if storage.is_dir() else ():
        try:
            json.loads(path.read_bytes())
        except ValueError:
            continue
        kept.add(path.name)
    return kept


def test_a_killed_evaluation_reruns_only_the_missing_calls(tmp_path, cli_env, openai_stub, sample_pickle):
    env = cli_env | {"OPENAI_API_KEY": openai_stub.api_key, "OPENAI_BASE_URL": openai_stub.base_url}
    openai_stub.chat_replies = {"gpt-4o-mini": lambda m, model: time.sleep(0.25) or "Price is $42.00"}
    args = ["evaluate", "--data", str(sample_pickle), "--model", "gpt-4o-mini", "--n", "20", "--concurrency", "2"]
    before = answers_on_disk()
    proc = subprocess.Popen([FTPREP, *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(answers_on_disk() - before) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the evaluation ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # requests in flight at the kill still reach the stub: read the count once it has not moved for 1 s
    sent = openai_stub.chat_count()
    killed = still = time.monotonic()
    while time.monotonic() - still < 1.0 and time.monotonic() - killed < 10:
        time.sleep(0.1)
        if openai_stub.chat_count() != sent:
            sent, still = openai_stub.chat_count(), time.monotonic()
    kept = len(answers_on_disk() - before)
    assert 5 <= kept < 20 and kept <= sent < 20  # answers were written as they arrived, not at the end

    done = cli(env, tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert openai_stub.chat_count() - sent == 20 - kept  # only the calls with no answer yet
    assert len(answers_on_disk() - before) == 20
    table = done.stdout.splitlines()
    assert any(line.startswith("gpt-4o-mini ") and " 20 " in line for line in table), done.stdout
    assert "baseline left out" in done.stdout


def test_model_is_repeatable_on_the_command_line(tmp_path, cli_env, openai_stub):
    env = cli_env | {"OPENAI_API_KEY": openai_stub.api_key, "OPENAI_BASE_URL": openai_stub.base_url}
    data = items(tmp_path / "test.jsonl")
    done = cli(env, tmp_path, "evaluate", "--data", data, "--model", "gpt-4o-mini", "--model", "gpt-nope",
               "--n", "4")
    assert done.returncode == 0, done.stderr
    assert openai_stub.chat_count("gpt-4o-mini") == 4 and openai_stub.chat_count("gpt-nope") == 1
    assert "gpt-nope: chat completion with gpt-nope was refused: HTTP 404" in done.stdout
    assert (tmp_path / "eval" / "comparison.json").is_file() and (tmp_path / "eval" / "comparison.png").is_file()


def test_serve_without_a_prefect_server_says_how_to_start_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = cli(env, tmp_path, "serve")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "temporary Prefect server that disappears with it" in line and "prefect server start" in line
