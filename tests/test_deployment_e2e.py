"""End to end as a user runs it from the UI: a real `prefect server`, a work pool, `prefect deploy` from
prefect.yaml, a process worker, and a run of the deployment with non-default parameters, uploading
through the real SDK to the stub with one injected transient fault. Every process started is stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path):
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_until(check, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def server_env(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PREFECT_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=api, PWD=str(ROOT),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_WORKER_QUERY_SECONDS="1",
               PREFECT_WORKER_PREFETCH_SECONDS="1")
    with process([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                 env, tmp_path / "server.log") as server:
        wait_until(lambda: healthy(api) or server.poll() is not None, 120, "prefect server")
        assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
        yield env


def test_deployment_runs_from_the_api_with_retry_history(tmp_path, server_env, openai_stub, sample_pickle):
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterTaskRunId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = server_env
    run = lambda *args: subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=ROOT,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    created = run("work-pool", "create", "ftprep-process", "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = run("--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    worker_env = dict(env, OPENAI_API_KEY=openai_stub.api_key, OPENAI_BASE_URL=openai_stub.base_url,
                      FTPREP_RETRY_BASE_SECONDS="0.2")
    openai_stub.inject("POST", "/v1/files", "status", status=503, message="The server is overloaded")
    out = tmp_path / "out"
    parameters = {"data": str(sample_pickle), "out": str(out), "template": "course",
                  "split": {"train_size": 120, "validation_size": 30, "shuffle": True, "seed": 7}}

    with process([str(BIN / "prefect"), "worker", "start", "--pool", "ftprep-process"], worker_env,
                 tmp_path / "worker.log") as worker, \
            temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("prepare/prepare-sample")
        assert [s.schedule.cron for s in deployment.schedules] == ["0 6 * * 1"]
        flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)

        def finished():
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            state = client.read_flow_run(flow_run.id).state
            return state if state and state.is_final() else None

        state = wait_until(finished, 240, "the flow run", interval=1)
        assert state.is_completed(), (state.message, (tmp_path / "worker.log").read_text()[-3000:])

        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
        uploads = [t for t in task_runs if t.name.startswith("upload")]
        assert len(uploads) == 2
        retried = [t for t in uploads if t.run_count > 1]
        assert len(retried) == 1, [(t.name, t.run_count) for t in uploads]
        history = [s.name for s in client.read_task_run_states(retried[0].id)]
        assert "AwaitingRetry" in history and "Retrying" in history and history[-1] == "Completed", history
        # Logs reach the API in batches, possibly just after the run's final state: wait for them.
        def retry_logs():
            logs = client.read_logs(LogFilter(task_run_id=LogFilterTaskRunId(any_=[retried[0].id])))
            return [log.message for log in logs if "HTTP 503" in log.message and "retry" in log.message.lower()]

        assert wait_until(retry_logs, 30, "the retry reason in the upload task's logs")

        stored = {f.id for f in openai_stub.files_for("fine-tune")}
        assert len(stored) == 2
        (table,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ftprep-files"])),
                                         limit=1, sort="CREATED_DESC")
        assert all(file_id in str(table.data) for file_id in stored)
        variable = client.read_variable_by_name("ftprep_latest_files")
        assert {variable.value["train_file_id"], variable.value["validation_file_id"]} == stored
        assert len((out / "fine_tune_train.jsonl").read_text().splitlines()) == 120
