"""The fine-tune flow under a flaky or hostile server and a careless operator, through the real SDK to the stub:
events that always fail, a refused job, waits that hit their bound, a limit on cost, malformed Variables."""

from __future__ import annotations

import time

import pytest
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.variables import Variable

from flows.evaluate import evaluate
from flows.finetune import fine_tune
from flows.prepare import prepare
from ftprep.models import FineTuneConfig, SplitConfig
from tasks.finetune import job_params
from tests.openai_stub import StubOpenAI

pytestmark = pytest.mark.usefixtures("prefect_server")
TRAIN = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "$1.00"}]}\n' * 12


def logs_of(state, contains: str, at_least: int = 1, wait: float = 15) -> list[str]:
    """The run's log lines containing ``contains`` (logs reach the API in batches: wait for ``at_least``)."""
    deadline = time.monotonic() + wait
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
        found = [log.message for log in logs if contains in log.message]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture
def restore_variables():
    saved = {name: Variable.get(name) for name in ("ftprep_latest_files", "ftprep_latest_model")}
    yield
    for name, value in saved.items():
        if value is None:
            Variable.unset(name)
        else:
            Variable.set(name, value, overwrite=True)


def test_a_failing_events_endpoint_does_not_stop_the_follow(openai_env):
    training = openai_env.seed_file("train.jsonl", TRAIN)
    openai_env.inject("GET", "/v1/fine_tuning/jobs/*/events", "status", times=None, status=500)
    state = fine_tune(training_file=training.id, job=FineTuneConfig(suffix="events"), poll_seconds=0.02,
                      return_state=True)
    assert state.is_completed(), state.message
    assert state.result().status == "succeeded"
    assert openai_env.count("GET", "/v1/fine_tuning/jobs/") >= 4  # events were asked for, and failed, each poll
    assert len(logs_of(state, "following its status only")) == 1  # said once, not once per poll


def test_a_refused_job_creation_is_sent_once(openai_env):
    training = openai_env.seed_file("train.jsonl", TRAIN)
    started = time.monotonic()
    state = fine_tune(training_file=training.id, job=FineTuneConfig(model="gpt-unknown-model"), return_state=True)
    assert state.is_failed()
    assert "was refused: HTTP 400" in state.message and "gpt-unknown-model" in state.message, state.message
    assert openai_env.count("POST", "/v1/fine_tuning/jobs", exact=True) == 1
    assert time.monotonic() - started < 30  # no retry delays
    assert logs_of(state, "not retrying (permanent error)")


def test_a_job_queued_forever_stops_at_the_configured_bound_with_heartbeats(openai_env, monkeypatch):
    monkeypatch.setenv("FTPREP_HEARTBEAT_SECONDS", "0.5")
    training = openai_env.seed_file("train.jsonl", TRAIN)
    openai_env.job_script = ("validating_files", "queued")
    started = time.monotonic()
    state = fine_tune(training_file=training.id, job=FineTuneConfig(suffix="queued"), poll_seconds=0.1,
                      job_timeout=3, return_state=True)
    assert state.is_failed() and time.monotonic() - started < 60
    (job,) = openai_env.jobs
    assert f"fine-tuning job {job['id']} still queued" in state.message and "after 3 s" in state.message
    assert "it keeps running: run ftprep fine-tune again" in state.message and "--job-timeout" in state.message
    assert job["status"] == "queued"  # not cancelled: the bound is on the wait, not on the job
    beats = logs_of(state, f"Still waiting for fine-tuning job {job['id']}", at_least=3)
    assert len(beats) >= 3 and all("queued" in line for line in beats), beats


def test_the_processing_wait_uses_the_configured_bound(monkeypatch):
    with StubOpenAI(processing_polls=10_000) as stub:
        monkeypatch.setenv("OPENAI_API_KEY", stub.api_key)
        monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
        monkeypatch.setenv("FTPREP_PROCESSING_TIMEOUT", "1.5")
        monkeypatch.setenv("FTPREP_HEARTBEAT_SECONDS", "0.4")
        training = stub.seed_file("train.jsonl", TRAIN)
        state = fine_tune(training_file=training.id, return_state=True)
        assert state.is_failed() and "after 1.5 s" in state.message and "FTPREP_PROCESSING_TIMEOUT" in state.message
        assert logs_of(state, "Still waiting for processing of", at_least=2)
        # the flow parameter wins over the setting
        state = fine_tune(training_file=training.id, processing_timeout=0.5, return_state=True)
        assert state.is_failed() and "after 0.5 s" in state.message, state.message
        assert stub.jobs == []


def test_max_cost_refuses_a_job_above_the_estimate(tmp_path, monkeypatch, openai_env, sample_pickle,
                                                   restore_variables):
    monkeypatch.chdir(tmp_path)
    prepared = prepare(data=str(sample_pickle), out=str(tmp_path / "out"),
                       split=SplitConfig(train_size=40, validation_size=10))
    latest = Variable.get("ftprep_latest_files")
    assert latest["train_billable_tokens"] == prepared.validation.billable_tokens > 0  # what --max-cost reads
    expected = latest["train_billable_tokens"] * 2 * 3.00 / 1e6  # 2 epochs of gpt-4o-mini at $3 per 1M

    config = FineTuneConfig(n_epochs=2, suffix="cost")
    state = fine_tune(job=config, max_cost=expected / 2, return_state=True)
    assert state.is_failed()
    assert f"estimated training cost ${expected:,.2f}" in state.message and "2 epochs" in state.message
    assert "is above max_cost (--max-cost)" in state.message and "no job was created" in state.message
    assert openai_env.count("POST", "/v1/fine_tuning/jobs", exact=True) == 0

    # a file the latest prepare run did not make cannot be estimated: refused too, saying why
    other = openai_env.seed_file("other.jsonl", TRAIN)
    state = fine_tune(training_file=other.id, job=config, max_cost=100.0, return_state=True)
    assert state.is_failed() and "cannot be estimated" in state.message and openai_env.jobs == []

    done = fine_tune(job=config, max_cost=expected * 2, poll_seconds=0.02)
    assert done.status == "succeeded" and len(openai_env.jobs) == 1


@pytest.mark.parametrize("value", ["file-abc123", ["file-abc123", "file-def456"], {"train_file_id": 7}])
def test_a_malformed_latest_files_variable_is_one_line(openai_env, restore_variables, value):
    Variable.set("ftprep_latest_files", value, overwrite=True)
    state = fine_tune(return_state=True)
    assert state.is_failed()
    assert state.message.startswith("Flow run encountered an exception: InputError: Prefect Variable "
                                    "'ftprep_latest_files' "), state.message
    assert "prefect variable unset ftprep_latest_files" in state.message and "\n" not in state.message
    assert openai_env.requests == []


@pytest.mark.parametrize("value", ["gpt-4o-mini", 42, {"job_id": "ftjob-1", "status": "failed"}])
def test_a_malformed_latest_model_variable_is_one_line(tmp_path, openai_env, restore_variables, value):
    Variable.set("ftprep_latest_model", value, overwrite=True)
    state = evaluate(data=str(tmp_path / "unused.pkl"), out=str(tmp_path / "eval"), return_state=True)
    assert state.is_failed()
    assert "Prefect Variable 'ftprep_latest_model'" in state.message, state.message
    assert "prefect variable unset ftprep_latest_model" in state.message and "--model" in state.message
    assert openai_env.requests == []


def test_epochs_auto_sends_none_and_empty_or_the_old_name_still_work():
    """``--epochs auto`` (the UI's form: "auto", or left empty) lets OpenAI choose: no hyperparameters are sent, the
    same job key as settings saved before "auto" existed (None); ``n_epochs``, OpenAI's name, is still accepted."""
    auto = job_params("file-t", None, FineTuneConfig(epochs="auto"))
    assert "hyperparameters" not in auto
    assert job_params("file-t", None, FineTuneConfig.model_validate({"epochs": None})) == auto
    old_name = FineTuneConfig.model_validate({"n_epochs": 2})
    assert job_params("file-t", None, old_name)["hyperparameters"] == {"n_epochs": 2}
    assert job_params("file-t", None, FineTuneConfig())["hyperparameters"] == {"n_epochs": 1}
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        FineTuneConfig(epochs=0)
