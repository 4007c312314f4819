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

    # evaluate the latest fine-tuned model (default) on held-out items of the same data
    metrics = evaluate(data=str(sample_pickle), out=str(tmp_path / "eval"), n=25, sample_seed=3, concurrency=4)
    assert metrics.model == result.fine_tuned_model and metrics.items == 25
    chats = [r for r in openai_env.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == 25 and all(r.json["model"] == result.fine_tuned_model for r in chats)
    assert all([m["role"] for m in r.json["messages"]] == ["system", "user"] for r in chats)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["mae"] == pytest.approx(metrics.mae) and saved["items"] == 25
    assert (tmp_path / "eval" / "chart.png").read_bytes()[:4] == b"\x89PNG"


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


def test_latest_files_from_another_server_are_not_used(monkeypatch, prefect_server, openai_env):
    from prefect.variables import Variable

    Variable.set("ftprep_latest_files", {"remote": "https://api.openai.com/v1", "train_file_id": "file-elsewhere"},
                 overwrite=True)
    state = fine_tune(return_state=True)
    assert state.is_failed() and "were uploaded to https://api.openai.com/v1" in state.message
    assert openai_env.jobs == []
