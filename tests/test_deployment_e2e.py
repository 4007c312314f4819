"""End to end as a user runs it from the UI: a real `prefect server`, a work pool, `prefect deploy` from
prefect.yaml, a process worker, and a run of the deployment with non-default parameters, uploading
through the real SDK to the stub with one injected transient fault. Every process started is stopped."""

from __future__ import annotations

import pytest

from tests.prefect_api import client_of, settle
from tests.prefect_procs import prefect, prefect_server, tail, wait_until, worker


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    """One real `prefect server` for this module's tests, with the work pool and prefect.yaml's deployments
    (starting a server and deploying take most of an end-to-end test). Each test starts its own worker and
    flow run and reads only that run's records, by id."""
    home = tmp_path_factory.mktemp("prefect-e2e")
    with prefect_server(home / "prefect-home", home / "server.log") as env:
        prefect(env, "work-pool", "create", "ftprep-process", "--type", "process")
        prefect(env, "--no-prompt", "deploy", "--all")
        yield env


def test_deployment_runs_from_the_api_with_retry_history(tmp_path, server_env, openai_stub, sample_pickle):
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterTaskRunId,
    )

    env = server_env

    openai_stub.inject("POST", "/v1/files", "status", status=503, message="The server is overloaded")
    out = tmp_path / "out"
    parameters = {"data": str(sample_pickle), "out": str(out), "template": "course",
                  "split": {"train_size": 120, "validation_size": 30, "shuffle": True, "seed": 7}}

    worker_log = tmp_path / "worker.log"
    with worker(env, worker_log, OPENAI_API_KEY=openai_stub.api_key, OPENAI_BASE_URL=openai_stub.base_url,
                FTPREP_RETRY_BASE_SECONDS="0.2") as worker_proc, \
            client_of(env["PREFECT_API_URL"]) as client:
        deployment = client.read_deployment_by_name("prepare/prepare-sample")
        assert [s.schedule.cron for s in deployment.schedules] == ["0 6 * * 1"]
        flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)

        def finished():
            assert worker_proc.poll() is None, tail(worker_log)
            state = client.read_flow_run(flow_run.id).state
            return state if state and state.is_final() else None

        state = wait_until(finished, 240, "the flow run", interval=1)
        assert state.is_completed(), (state.message, tail(worker_log))
        settle(client, [flow_run.id], here=False)  # task runs' final states reach the server after the flow's

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


def test_cancelling_one_of_two_runs_cancels_exactly_its_job(tmp_path, server_env, openai_stub):
    """Runs A and B follow their own jobs; C reuses B's. Cancelling A (from the API, as the UI's Cancel button
    does) cancels A's job only, with one cancel request; cancelling C leaves B's job (shared, said in one line);
    cancelling B then cancels it. No run's record is left behind."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.states import Cancelling

    env = server_env  # the module's server: the work pool and the deployments exist already
    a_file = openai_stub.seed_file("a.jsonl", b'{"messages": []}\n' * 10)
    b_file = openai_stub.seed_file("b.jsonl", b'{"messages": []}\n' * 11)
    openai_stub.job_script = ("validating_files", "queued", "running")  # jobs run until cancelled

    worker_log = tmp_path / "worker.log"
    with worker(env, worker_log, OPENAI_API_KEY=openai_stub.api_key, OPENAI_BASE_URL=openai_stub.base_url), \
            client_of(env["PREFECT_API_URL"]) as client:
        deployment = client.read_deployment_by_name("fine-tune/fine-tune-latest")

        def run(file_id):
            return client.create_flow_run_from_deployment(
                deployment.id, parameters={"training_file": file_id, "poll_seconds": 0.2}).id

        def job_of(file_id):
            return next((j for j in openai_stub.jobs if j["training_file"] == file_id), None)

        def status(file_id):
            return (job_of(file_id) or {}).get("status")

        run_a, run_b = run(a_file.id), run(b_file.id)
        wait_until(lambda: status(a_file.id) == status(b_file.id) == "running", 180,
                   f"both jobs to run\n{tail(worker_log)}")
        run_c = run(b_file.id)
        wait_until(lambda: client.read_variable_by_name(f"ftprep-run-job-{run_c}"), 120,
                   f"run C to follow B's job\n{tail(worker_log)}")
        assert len(openai_stub.jobs) == 2  # C reused B's job

        def cancel_and_wait(flow_run_id, what):
            client.set_flow_run_state(flow_run_id, Cancelling(), force=True)
            wait_until(lambda: client.read_flow_run(flow_run_id).state.is_cancelled(), 90,
                       f"{what} to be cancelled\n{tail(worker_log)}", interval=1)

        def hook_line(flow_run_id):
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            return next((log.message for log in logs if log.message.startswith("flow run cancelled")), None)

        cancel_and_wait(run_a, "run A")
        wait_until(lambda: status(a_file.id) == "cancelled", 60, "A's job to be cancelled")
        assert status(b_file.id) == "running"

        cancel_and_wait(run_c, "run C")
        line = wait_until(lambda: hook_line(run_c), 60, "run C's hook line")
        b_job = job_of(b_file.id)["id"]
        assert line == (f"flow run cancelled: fine-tuning job {b_job} keeps running, not cancelled: it is shared "
                        f"with flow run {run_b}, which follows it too; cancel that run as well to stop the job")
        assert status(b_file.id) == "running"

        cancel_and_wait(run_b, "run B")
        wait_until(lambda: status(b_file.id) == "cancelled", 60, "B's job to be cancelled once C stopped")
        assert wait_until(lambda: hook_line(run_b), 60, "run B's hook line") == (
            f"flow run cancelled: cancelled fine-tuning job {b_job} (now cancelled)")
        # the hook logs its line, then drops the run's record: wait for the drop
        assert wait_until(lambda: all(client.read_variable_by_name(f"ftprep-run-job-{r}") is None
                                      for r in (run_a, run_b, run_c)), 30, "the runs' job records to be dropped")
    for file_id in (a_file.id, b_file.id):
        job_id = job_of(file_id)["id"]
        assert openai_stub.count("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel", exact=True) == 1


def test_serve_refuses_to_replace_a_work_pool_deployment(tmp_path, server_env):
    """`ftprep serve` on a server where `prefect deploy` made the same deployments for the work pool would replace
    them (their code's location lost: the worker's runs, the schedule's too, would crash even after serve stops).
    It refuses in one line, and the deployment is left as it was."""
    import subprocess
    import sys
    from pathlib import Path

    ftprep = str(Path(sys.executable).parent / "ftprep")
    done = subprocess.run([ftprep, "serve", "prepare-sample"], env=server_env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line == ("error: deployment prepare/prepare-sample on this server runs on work pool 'ftprep-process' "
                    "(prefect deploy); serving it would replace it and break its worker's runs: run the worker "
                    "instead, or delete it first (prefect deployment delete prepare/prepare-sample)"), line
    with client_of(server_env["PREFECT_API_URL"]) as client:
        kept = client.read_deployment_by_name("prepare/prepare-sample")
    assert kept.work_pool_name == "ftprep-process" and kept.pull_steps


def test_a_bad_parameter_is_one_line_in_the_worker_runs_logs(tmp_path, server_env):
    """A run of a deployment with a parameter ftprep's own check refuses (a project name with capitals): the worker's
    flow process checks the parameters before the flow body runs. Its logs hold the one line, and no traceback
    (before: Prefect's "Engine execution exited with unexpected exception" and about 20 lines of it)."""
    import time

    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    env = server_env
    worker_log = tmp_path / "worker.log"
    with worker(env, worker_log) as worker_proc, client_of(env["PREFECT_API_URL"]) as client:
        deployment = client.read_deployment_by_name("prepare/prepare-sample")
        flow_run = client.create_flow_run_from_deployment(deployment.id, parameters={"project": "Team_A"})

        def finished():
            assert worker_proc.poll() is None, tail(worker_log)
            state = client.read_flow_run(flow_run.id).state
            return state if state and state.is_final() else None

        state = wait_until(finished, 240, "the flow run", interval=1)
        assert state.is_failed() and "project (--project) 'Team_A' is not allowed" in state.message, state.message
        settle(client, [flow_run.id], here=False)

        def logs():
            return [log.message for log in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(
                any_=[flow_run.id])))]

        wait_until(lambda: any("'Team_A' is not allowed" in m for m in logs()), 60, "the one line in the run's logs")
        time.sleep(3)  # the process's last log batch (a traceback would be logged after the line) has arrived
        messages = logs()
        assert not [m for m in messages if "Traceback" in m or "unexpected exception" in m], messages
