"""prepare → fine-tune → evaluate under Prefect, through the real SDK to the stub, no ids passed by hand."""

from __future__ import annotations

import json
import time

import pytest
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from flows.evaluate import evaluate
from flows.finetune import fine_tune
from flows.prepare import prepare
from ftprep.models import FineTuneConfig, SplitConfig

pytestmark = pytest.mark.usefixtures("prefect_server")


def flow_logs(state) -> list[str]:
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    return [log.message for log in logs]


def test_prepare_then_fine_tune_then_evaluate(tmp_path, monkeypatch, openai_env, sample_pickle):
    monkeypatch.chdir(tmp_path)
    prepared = prepare(data=str(sample_pickle), out=str(tmp_path / "out"),
                       split=SplitConfig(train_size=60, validation_size=20))
    train_id, val_id = prepared.remote_file("train").id, prepared.remote_file("validation").id

    state = fine_tune(poll_seconds=0.02, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    (job,) = openai_env.jobs
    assert (job["training_file"], job["validation_file"]) == (train_id, val_id)
    assert job["model"] == "gpt-4o-mini-2024-07-18" and job["seed"] == 42 and job["hyperparameters"]["n_epochs"] == 1
    assert result.status == "succeeded" and result.fine_tuned_model.startswith("ft:gpt-4o-mini-2024-07-18:")
    assert ":pricer:" in result.fine_tuned_model and result.trained_tokens > 0 and result.result_files

    # every job event is in the flow's logs exactly once (logs reach the API in batches: wait for them)
    expected = [f"{job['id']}: {e['message']}" for e in openai_env.job(job["id"]).events]
    assert len(expected) >= 8
    deadline = time.monotonic() + 15
    while not set(expected) <= set(logs := flow_logs(state)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [line for line in logs if line in expected] == expected  # each once, oldest first

    # running it again starts no second job for the same files and settings
    again = fine_tune(poll_seconds=0.02)
    assert again.job_id == result.job_id and again.reused and len(openai_env.jobs) == 1
    assert openai_env.count("POST", "/v1/fine_tuning/jobs", exact=True) == 1

    # evaluate the latest fine-tuned model and its base (default) on held-out items of the same data
    comparison = evaluate(data=str(sample_pickle), out=str(tmp_path / "eval"), n=25, sample_seed=3, concurrency=4)
    assert [r.model for r in comparison.rows] == [result.fine_tuned_model, job["model"], "baseline: training mean"]
    assert comparison.items == 25 and all(r.items == 25 for r in comparison.rows)
    chats = [r for r in openai_env.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == 50 and openai_env.chat_count(result.fine_tuned_model) == 25
    assert all([m["role"] for m in r.json["messages"]] == ["system", "user"] for r in chats)
    saved = json.loads((tmp_path / "eval" / "comparison.json").read_text())
    assert saved["rows"][0]["mae"] == pytest.approx(comparison.rows[0].mae) and saved["items"] == 25
    assert (tmp_path / "eval" / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_a_failed_job_fails_the_flow_with_the_servers_message(tmp_path, monkeypatch, openai_env, sample_pickle):
    monkeypatch.chdir(tmp_path)
    prepared = prepare(data=str(sample_pickle), out=str(tmp_path / "out"),
                       split=SplitConfig(train_size=61, validation_size=20))
    from prefect.variables import Variable

    last_good = Variable.get("ftprep_latest_model")
    openai_env.fail_jobs(message="Training file has too few distinct examples", code="invalid_training_file")
    state = fine_tune(training_file=prepared.remote_file("train").id, job=FineTuneConfig(suffix="x"),
                      poll_seconds=0.02, return_state=True)
    assert state.is_failed()
    assert "failed: Training file has too few distinct examples" in state.message
    assert Variable.get("ftprep_latest_job")["status"] == "failed"
    assert Variable.get("ftprep_latest_model") == last_good  # evaluate keeps using the last model that worked
    # a failed job is not reused: the next run starts a new one
    openai_env.job_script = ("validating_files", "queued", "running", "succeeded")
    ok = fine_tune(training_file=prepared.remote_file("train").id, job=FineTuneConfig(suffix="x"), poll_seconds=0.02)
    assert ok.status == "succeeded" and not ok.reused and len(openai_env.jobs) == 2


def test_fine_tune_without_prepared_files_says_what_to_do(monkeypatch, prefect_server, openai_env):
    from prefect.variables import Variable

    Variable.unset("ftprep_latest_files")
    state = fine_tune(return_state=True)
    assert state.is_failed() and "no training file: run prepare with an API key first" in state.message


def test_fine_tune_without_a_key_says_so_first(monkeypatch, prefect_server, openai_env):
    """No key and latest files from another server: the missing key is what to fix first (it was the server)."""
    from prefect.variables import Variable

    Variable.set("ftprep_latest_files", {"remote": "https://api.openai.com/v1", "train_file_id": "file-elsewhere"},
                 overwrite=True)
    monkeypatch.delenv("OPENAI_API_KEY")
    state = fine_tune(return_state=True)
    assert state.is_failed() and state.message.endswith(
        "OPENAI_API_KEY is not set: put OPENAI_API_KEY=sk-... in the environment or in .env "
        "(prepare also works without it with --no-upload)"), state.message
    assert openai_env.jobs == []


def test_latest_files_from_another_server_are_not_used(monkeypatch, prefect_server, openai_env):
    from prefect.variables import Variable

    Variable.set("ftprep_latest_files", {"remote": "https://api.openai.com/v1", "train_file_id": "file-elsewhere"},
                 overwrite=True)
    state = fine_tune(return_state=True)
    assert state.is_failed() and "were uploaded to https://api.openai.com/v1" in state.message
    assert openai_env.jobs == []


# ------------------------------------------------------------------------------- did fine-tuning pay off?
# A fixed set of four test items, and what each model answers for each (by the item's title): MAE by hand.
FIXED = {"Kettle 2L": 20.0, "Desk lamp": 100.0, "Cordless drill": 300.0, "Oak chair": 60.0}
FT_SAYS = {"Kettle 2L": "Price is $22.00", "Desk lamp": "Price is $90.00", "Cordless drill": "Price is $280.00",
           "Oak chair": "Price is $60.00"}  # errors 2, 10, 20, 0
BASE_SAYS = {"Kettle 2L": "Price is $45.00", "Desk lamp": "$150", "Cordless drill": "I cannot say",
             "Oak chair": "Price is $30.00"}  # errors 25, 50, 300 (no number: $0), 30
NANO_SAYS = {"Kettle 2L": "$20", "Desk lamp": "$100", "Cordless drill": "$300", "Oak chair": "$60"}


def fixed_items(path) -> str:
    with open(path, "w") as f:
        for title, price in FIXED.items():
            prompt = f"How much does this cost to the nearest dollar?\n\n{title}\n\nPrice is ${price:.2f}"
            f.write(json.dumps({"prompt": prompt, "price": price}) + "\n")
    return str(path)


def says(table: dict[str, str]):
    return lambda messages, model: table[messages[-1]["content"].split("\n\n")[1]]


def training_prices(path) -> list[float]:
    with open(path) as f:
        return [float(json.loads(line)["messages"][-1]["content"].removeprefix("Price is $")) for line in f]


def test_did_fine_tuning_pay_off(tmp_path, monkeypatch, openai_env, sample_pickle):
    monkeypatch.chdir(tmp_path)
    prepared = prepare(data=str(sample_pickle), out=str(tmp_path / "out"),
                       split=SplitConfig(train_size=40, validation_size=12))
    job = fine_tune(poll_seconds=0.02, job=FineTuneConfig(suffix="payoff"))
    ft, base = job.fine_tuned_model, job.model
    openai_env.chat_replies = {ft: says(FT_SAYS), base: says(BASE_SAYS), "gpt-4.1-nano*": says(NANO_SAYS)}
    data, out = fixed_items(tmp_path / "test.jsonl"), tmp_path / "eval"

    first = evaluate(data=data, out=str(out), n=4, concurrency=2)  # no models: the fine-tuned one and its base
    assert [r.model for r in first.rows] == [ft, base, "baseline: training mean"]
    rows = {r.model: r for r in first.rows}
    assert rows[ft].mae == pytest.approx((2 + 10 + 20 + 0) / 4)  # 8.00
    assert rows[ft].hit_rate == 1.0 and rows[ft].unparsed == 0
    assert rows[base].mae == pytest.approx((25 + 50 + 300 + 30) / 4)  # 101.25
    assert rows[base].hit_rate == 0.5 and rows[base].unparsed == 1  # kettle and chair within $40
    mean = sum(prices := training_prices(prepared.files.train.path)) / len(prices)
    baseline = rows["baseline: training mean"]
    assert baseline.kind == "baseline" and baseline.mae == pytest.approx(sum(abs(t - mean) for t in FIXED.values()) / 4)
    assert f"${mean:,.2f}" in first.baseline and first.job_id == job.job_id
    assert first.trained_on is None  # held-out items: none of them was a training example
    assert rows[ft].cost_usd is not None and rows[ft].prompt_tokens > 0 and rows[ft].median_latency_seconds > 0
    assert openai_env.chat_count(ft) == 4 and openai_env.chat_count(base) == 4
    png = (out / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert json.loads((out / "comparison.json").read_text())["rows"][1]["mae"] == pytest.approx(101.25)

    # the same comparison again: no chat request, the same figures (latency and usage come from the cache)
    assert evaluate(data=data, out=str(out), n=4, concurrency=2) == first
    assert openai_env.chat_count() == 8

    # one more model: only its four items are asked
    third = evaluate(data=data, out=str(out), models=[ft, base, "gpt-4.1-nano-2025-04-14"], n=4)
    assert openai_env.chat_count() == 12 and openai_env.chat_count("gpt-4.1-nano-2025-04-14") == 4
    assert [r.mae for r in third.rows] == [pytest.approx(8.0), pytest.approx(101.25), 0.0, baseline.mae]
    assert third.rows[2].cost_usd == pytest.approx((third.rows[2].prompt_tokens * 0.10
                                                    + third.rows[2].completion_tokens * 0.40) / 1e6)

    # a model that does not exist: reported in its row with the server's message, asked once; the rest scored
    state = evaluate(data=data, out=str(out), models=[ft, "gpt-nonexistent"], n=4, return_state=True)
    assert state.is_completed(), state.message
    unknown = state.result().rows[1]
    assert unknown.model == "gpt-nonexistent" and unknown.items == 0 and unknown.failed == 4
    assert "The model `gpt-nonexistent` does not exist" in unknown.error
    assert openai_env.chat_count("gpt-nonexistent") == 1 and openai_env.chat_count() == 13
    assert state.result().rows[0].mae == pytest.approx(8.0)

    # the training records themselves (the first 40 of the sample): the comparison says the model saw them
    openai_env.chat_replies = {ft: lambda messages, model: "Price is $10.00",
                               base: lambda messages, model: "Price is $20.00"}
    seen = evaluate(data=str(sample_pickle), out=str(tmp_path / "eval-seen"), n=5, concurrency=2)
    assert seen.trained_on is not None and seen.trained_on.startswith("5 of the 5 test items of "), seen.trained_on
    assert "are in the fine-tuned model's training data" in seen.trained_on
    assert json.loads((tmp_path / "eval-seen" / "comparison.json").read_text())["trained_on"] == seen.trained_on


def test_without_a_model_from_a_known_job_the_baseline_is_left_out(tmp_path, openai_env):
    openai_env.chat_replies = {"gpt-4o-mini*": says(NANO_SAYS)}
    data = fixed_items(tmp_path / "test.jsonl")
    comparison = evaluate(data=data, out=str(tmp_path / "eval"), models=["gpt-4o-mini"], n=4)
    assert [r.model for r in comparison.rows] == ["gpt-4o-mini"]
    assert comparison.baseline.startswith("baseline left out: no model in the comparison came from a known")
