"""The Prefect UI in a real browser (Debian's Chromium driven by Playwright), as a user runs ftprep from it.

A real `prefect server`, the work pool, `prefect deploy` from prefect.yaml and a process worker uploading to
the stub with one injected 503. In the UI the user lands in: Deployments -> prepare-sample -> Run -> Custom
run, with other sizes than the defaults; then, on the pages: the run's task runs, the upload's retry line in
its logs, the ftprep-files artifact with the new file ids, and the Variable ftprep_latest_files holding them.
Skips, with one line saying what to install, where Chromium or Playwright is missing.
"""

from __future__ import annotations

import re

import pytest

from tests.prefect_api import client_of, settle
from tests.prefect_procs import prefect, prefect_server, tail, wait_until, worker
from tests.prefect_ui import (
    RETRY_LINE,
    browser_page,
    fill_run_form,
    find_log_line,
    flow_run_tab,
    landing_ui,
    missing,
    open_custom_run_form,
    open_deployment,
    submit_run,
)

MISSING = missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

TASKS = ("load", "split", "format", "write", "validate", "publish")


def test_custom_run_from_the_ui(tmp_path, openai_stub, sample_pickle):
    from playwright.sync_api import expect

    out = tmp_path / "out"
    with prefect_server(tmp_path / "prefect-home", tmp_path / "server.log") as env:
        prefect(env, "work-pool", "create", "ftprep-process", "--type", "process")
        prefect(env, "--no-prompt", "deploy", "--all")
        openai_stub.inject("POST", "/v1/files", "status", status=503, message="The server is overloaded")
        worker_log = tmp_path / "worker.log"
        with worker(env, worker_log, OPENAI_API_KEY=openai_stub.api_key, OPENAI_BASE_URL=openai_stub.base_url,
                    FTPREP_RETRY_BASE_SECONDS="0.2") as worker_proc, \
                client_of(env["PREFECT_API_URL"]) as client, browser_page() as page:
            ui = landing_ui(page, env["PREFECT_API_URL"].removesuffix("/api"))

            # The custom run, through the form.
            open_deployment(page, ui, "prepare-sample")
            open_custom_run_form(page)
            fill_run_form(page, {"data": str(sample_pickle), "out": str(out),
                                 "Train Size": "120", "Validation Size": "30"})
            flow_run_id = submit_run(page, client, client.read_deployment_by_name("prepare/prepare-sample").id)

            def finished():
                assert worker_proc.poll() is None, tail(worker_log)
                state = client.read_flow_run(flow_run_id).state
                return state if state and state.is_final() else None

            state = wait_until(finished, 120, "the flow run", interval=0.5)
            assert state.is_completed(), (state.message, tail(worker_log))
            assert client.read_flow_run(flow_run_id).parameters["split"]["train_size"] == 120
            assert len((out / "fine_tune_train.jsonl").read_text().splitlines()) == 120
            file_ids = {f.id for f in openai_stub.files_for("fine-tune")}
            assert len(file_ids) == 2

            # Its task runs: one of each step, two uploads (their final states reach the server after the flow's).
            settle(client, [flow_run_id], here=False)
            panel = flow_run_tab(page, ui, flow_run_id, "Task Runs")
            for name in TASKS:
                expect(panel.get_by_text(re.compile(rf"^{name}-"))).to_have_count(1)
            expect(panel.get_by_text(re.compile(r"^upload-"))).to_have_count(2)

            # The failed upload attempt's line in the run's logs (they reach the API in batches: reloads).
            flow_run_tab(page, ui, flow_run_id, "Logs")
            expect(find_log_line(page, RETRY_LINE)).to_be_visible()

            # The ftprep-files artifact, with the uploaded files' ids.
            panel = flow_run_tab(page, ui, flow_run_id, "Artifacts")
            panel.get_by_text("ftprep-files", exact=True).click()
            page.wait_for_url(re.compile(r"/artifacts/artifact/"))
            for file_id in file_ids:
                expect(page.get_by_role("cell", name=file_id, exact=True)).to_be_visible()

            # The Variable the fine-tune run reads, with the new ids.
            page.goto(f"{ui}/variables")
            row = page.get_by_role("row").filter(has_text="ftprep_latest_files")
            for file_id in file_ids:
                expect(row).to_contain_text(file_id)
            value = client.read_variable_by_name("ftprep_latest_files").value
            assert {value["train_file_id"], value["validation_file_id"]} == file_ids
