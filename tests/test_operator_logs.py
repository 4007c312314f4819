"""What an operator sees in the UI's Logs tab: nothing at ERROR in a successful run, one line for an expected error,
tasks named by role, one line per retry."""

from __future__ import annotations

import pytest
from prefect import get_client

from flows.evaluate import evaluate
from flows.finetune import fine_tune
from flows.prepare import prepare
from ftprep.models import SplitConfig
from tests.prefect_api import run_logs, run_task_runs, settle

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_successful_runs_log_nothing_at_error_even_with_a_retry(tmp_path, monkeypatch, openai_env, sample_pickle):
    monkeypatch.chdir(tmp_path)
    openai_env.inject("POST", "/v1/files", "status", status=503)  # one transient failure: retried, not an error
    states = [prepare(data=str(sample_pickle), out=str(tmp_path / "out"), return_state=True,
                      split=SplitConfig(train_size=40, validation_size=10))]
    states.append(fine_tune(poll_seconds=0.02, return_state=True))
    states.append(evaluate(data=str(sample_pickle), out=str(tmp_path / "eval"), n=10, sample_seed=1,
                           return_state=True))
    assert all(s.is_completed() for s in states), [s.message for s in states]
    with get_client(sync_client=True) as client:
        ids = [s.state_details.flow_run_id for s in states]
        settle(client, ids)
        for run_id in ids:
            errors = [log.message for log in run_logs(client, run_id) if log.level >= 40]
            assert errors == [], errors
        prepare_logs = [log.message for log in run_logs(client, ids[0])]
        names = sorted(t.name for t in run_task_runs(client, ids[0]) if t.name.startswith("upload"))
    assert names == ["upload-train", "upload-validation"]
    retries = [m for m in prepare_logs if "attempt 1 of 5 failed: HTTP 503" in m]
    assert len(retries) == 1 and retries[0].startswith("upload-") and "; retrying in " in retries[0]
    assert not [m for m in prepare_logs if "Retry 1/4 will start" in m]  # Prefect's own line adds nothing


def test_an_expected_error_is_one_line_without_traceback(tmp_path, monkeypatch, sample_pickle):
    monkeypatch.chdir(tmp_path)
    state = prepare(data=str(sample_pickle), out=str(tmp_path / "out"), upload=False, return_state=True,
                    split=SplitConfig(train_size=900, validation_size=10))
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        settle(client, [state.state_details.flow_run_id])
        logs = [log.message for log in run_logs(client, state.state_details.flow_run_id)]
    mentions = [m for m in logs if "training and validation need records 0..909" in m]
    assert len(mentions) == 1, mentions
    assert not [m for m in logs if "Traceback" in m]
    assert "training and validation need records 0..909" in state.message


def test_the_commands_terminal_drops_prefects_flush_progress_but_not_other_warnings():
    """On a busy machine Prefect's event worker writes "Still processing items" while it flushes at exit, after
    the command's one `error:` line; the command's console drops those lines (and only those)."""
    import logging

    from ftprep.logs import QuietExpectedOnConsole

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)

    quiet = QuietExpectedOnConsole()
    assert not quiet.filter(record("EventsWorker", "Still processing items: 7 items remaining..."))
    assert not quiet.filter(record("APILogWorker", "Still processing items: 2 items remaining..."))
    assert quiet.filter(record("EventsWorker", "Failed to send events"))
    assert quiet.filter(record("prefect.flow_runs", "Still processing items: a flow's own words"))
