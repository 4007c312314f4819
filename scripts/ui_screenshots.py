"""Take the screenshots of the Prefect UI in docs/ui.md (docs/img/*.png), so they can be refreshed.

Needs Debian's Chromium and Playwright (Playwright's own browser downloads are not used):

    apt-get update && apt-get install -y chromium      # /usr/bin/chromium, or CHROMIUM=/path/to/chromium
    .venv/bin/pip install -e '.[docs]'                 # playwright (the dev extra has it too)

Then, from the repository root:

    .venv/bin/python scripts/ui_screenshots.py

It makes the 600-item sample when missing (data/sample/items.pkl), then, all on 127.0.0.1 and in a
temporary folder: starts a `prefect server` with a fresh PREFECT_HOME and the OpenAI stub
(tests/openai_stub.py) with one injected transient fault (the first POST /v1/files answers 503), creates
the work pool `ftprep-process`, runs `prefect --no-prompt deploy --all` and starts a process worker pointed
at the stub (tests/prefect_procs.py, as the end-to-end tests do).

Then, in headless Chromium driven by Playwright (tests/prefect_ui.py, shared with tests/test_ui_browser.py),
in the UI the server's root lands in (/v2/ with the pinned Prefect): it opens the deployment
`prepare-sample`, fills its custom run form (120/30 examples, shuffled with seed 7, out in the temporary
folder), photographs it and submits it, waits for the run, and photographs the flow run's task runs, its
logs at the retry line, the retried upload task run, that task run's state events, the run's artifacts,
the `ftprep-files` and `ftprep-validation` artifacts and the Variable `ftprep_latest_files`. Each picture
waits for the text it is about. They replace docs/img/*.png only when all of them were taken.

Every process it started (server, worker, Chromium, the in-process stub) is stopped at the end, also when
something fails, on Ctrl-C and on SIGTERM; on failure the temporary folder with the server's and the
worker's logs is kept and its path printed. It takes a minute or two and needs no network.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.openai_stub import StubOpenAI  # noqa: E402
from tests.prefect_procs import prefect, prefect_server, tail, wait_until, worker  # noqa: E402
from tests.prefect_ui import (  # noqa: E402
    RETRY_LINE,
    browser_page,
    fill_run_form,
    find_log_line,
    fit_to_content,
    flow_run_tab,
    landing_ui,
    missing,
    open_custom_run_form,
    open_deployment,
    reload_until,
    submit_run,
)

SAMPLE = ROOT / "data" / "sample" / "items.pkl"
TIKTOKEN_CACHE = ROOT.parent / "shared" / "tiktoken-cache"
DEPLOYMENT = "prepare-sample"
SHOTS = ("deployment-run-form.png", "flow-run.png", "flow-run-logs.png", "upload-task-run-retry.png",
         "upload-task-run-events.png", "flow-run-artifacts.png", "artifact-ftprep-files.png",
         "artifact-ftprep-validation.png", "variable-ftprep-latest-files.png")


def log(message: str) -> None:
    print(message, flush=True)


def make_sample() -> None:
    if SAMPLE.exists():
        return
    log(f"making the 600-item sample {SAMPLE.relative_to(ROOT)}")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "sample.py"), "--n", "600", "--seed", "42",
                    "--out", str(SAMPLE)], cwd=ROOT, check=True)


def wait_for_run(client, flow_run_id: str, worker_proc, worker_log: Path) -> dict[str, str]:
    """Wait for the flow run to complete; return the ids of the retried upload and of two artifacts."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    def finished():
        if worker_proc.poll() is not None:
            raise RuntimeError(f"the worker exited:\n{tail(worker_log)}")
        state = client.read_flow_run(flow_run_id).state
        return state if state and state.is_final() else None

    state = wait_until(finished, 300, "the flow run", interval=1)
    if not state.is_completed():
        raise RuntimeError(f"the flow run ended {state.name}: {state.message}\n{tail(worker_log)}")
    runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    task_runs = client.read_task_runs(flow_run_filter=runs)
    retried = [t for t in task_runs if t.name.startswith("upload") and t.run_count > 1]
    if len(retried) != 1:
        raise RuntimeError(f"expected one retried upload, got {[(t.name, t.run_count) for t in task_runs]}")
    artifacts = {a.key: str(a.id) for a in client.read_artifacts(flow_run_filter=runs)}
    missing_keys = {"ftprep-files", "ftprep-validation"} - set(artifacts)
    if missing_keys:
        raise RuntimeError(f"the flow run made no artifact {sorted(missing_keys)}; it made {sorted(artifacts)}")
    return {"task_run": str(retried[0].id), "files": artifacts["ftprep-files"],
            "validation": artifacts["ftprep-validation"]}


def take_screenshots(server: str, out_dir: Path, img: Path, client, worker_proc, worker_log: Path) -> None:
    """Run the deployment through its form and photograph the pages of docs/ui.md into ``img``."""
    from playwright.sync_api import expect

    img.mkdir(parents=True, exist_ok=True)

    with browser_page() as page:
        def shot(name: str, fit: bool = True) -> None:
            if fit:
                fit_to_content(page)
            page.screenshot(path=img / name, animations="disabled")
            log(f"  {name}  <- {page.url}")

        ui = landing_ui(page, server)
        log(f"the UI is at {ui}")
        open_deployment(page, ui, DEPLOYMENT)
        open_custom_run_form(page)
        fill_run_form(page, {"out": str(out_dir), "Train Size": "120", "Validation Size": "30", "Shuffle": True,
                             "Seed": "7"})
        page.get_by_label(re.compile(r"^Train Size")).scroll_into_view_if_needed()
        shot("deployment-run-form.png")
        flow_run_id = submit_run(page, client, client.read_deployment_by_name(f"prepare/{DEPLOYMENT}").id)
        log(f"flow run {flow_run_id} submitted through the form; waiting for it to complete")
        ids = wait_for_run(client, flow_run_id, worker_proc, worker_log)

        panel = flow_run_tab(page, ui, flow_run_id, "Task Runs")
        expect(panel.get_by_text(re.compile(r"^publish"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"^publish")).first).to_be_visible()  # and on the graph
        shot("flow-run.png")

        flow_run_tab(page, ui, flow_run_id, "Logs")
        page.set_viewport_size({"width": 1440, "height": 1000})
        find_log_line(page, RETRY_LINE, timeout=60)
        page.get_by_role("tab", name="Logs", exact=True).scroll_into_view_if_needed()
        page.evaluate("window.scrollBy(0, -8)")
        shot("flow-run-logs.png", fit=False)

        page.goto(f"{ui}/runs/task-run/{ids['task_run']}")
        expect(page.get_by_text(RETRY_LINE)).to_be_visible()
        expect(page.get_by_text("Run Count")).to_be_visible()
        shot("upload-task-run-retry.png")

        resource = f'["prefect.task-run.{ids["task_run"]}"]'
        page.goto(f"{ui}/events?resource={resource}")
        # Events reach the feed asynchronously, a few seconds after the states.
        reload_until(page, lambda p: p.get_by_text("prefect.task-run.Completed", exact=True), 60, "the events")
        for event in ("prefect.task-run.Pending", "prefect.task-run.AwaitingRetry", "prefect.task-run.Retrying",
                      "prefect.task-run.Completed"):
            expect(page.get_by_text(event, exact=True)).to_be_visible()
        shot("upload-task-run-events.png")

        panel = flow_run_tab(page, ui, flow_run_id, "Artifacts")
        expect(panel.get_by_text("ftprep-token-stats", exact=True)).to_be_visible()
        shot("flow-run-artifacts.png")

        page.goto(f"{ui}/artifacts/artifact/{ids['files']}")
        expect(page.get_by_role("cell", name=re.compile(r"^file-")).first).to_be_visible()
        shot("artifact-ftprep-files.png")

        page.goto(f"{ui}/artifacts/artifact/{ids['validation']}")
        expect(page.get_by_text(re.compile(r"^Validation:"))).to_be_visible()
        shot("artifact-ftprep-validation.png")

        page.goto(f"{ui}/variables")
        row = page.get_by_role("row").filter(has_text="ftprep_latest_files")
        row.get_by_role("button", name="Open menu").click()
        page.get_by_role("menuitem", name="Edit").click()
        expect(page.get_by_role("dialog")).to_contain_text("train_file_id")
        page.evaluate("document.activeElement && document.activeElement.blur()")
        shot("variable-ftprep-latest-files.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder for the PNGs (docs/img)")
    args = parser.parse_args(argv)

    # Processes run in their own sessions: make SIGTERM unwind like Ctrl-C, so they are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    problem = missing()
    if problem:
        print(f"error: the screenshots {problem}", file=sys.stderr)
        return 2
    started = time.monotonic()
    make_sample()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ftprep-ui-"))
    ok = False
    try:
        log(f"starting prefect server and the OpenAI stub (logs in {tmp})")
        with prefect_server(tmp / "prefect-home", tmp / "server.log") as env, StubOpenAI() as stub:
            stub.inject("POST", "/v1/files", "status", status=503, message="The server is overloaded")
            prefect(env, "work-pool", "create", "ftprep-process", "--type", "process")
            prefect(env, "--no-prompt", "deploy", "--all")
            worker_log = tmp / "worker.log"
            os.environ.update(PREFECT_HOME=env["PREFECT_HOME"], PREFECT_API_URL=env["PREFECT_API_URL"],
                              PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
            from prefect import get_client

            with worker(env, worker_log, OPENAI_API_KEY=stub.api_key, OPENAI_BASE_URL=stub.base_url,
                        TIKTOKEN_CACHE_DIR=str(TIKTOKEN_CACHE), FTPREP_RETRY_BASE_SECONDS="0.5") as worker_proc, \
                    get_client(sync_client=True) as client:
                take_screenshots(env["PREFECT_API_URL"].removesuffix("/api"), tmp / "out", tmp / "img", client,
                                 worker_proc, worker_log)
        for name in SHOTS:
            shutil.copyfile(tmp / "img" / name, args.out / name)
        ok = True
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"failed; docs/img is unchanged; the server's and worker's logs are in {tmp}", file=sys.stderr)
    log(f"done in {time.monotonic() - started:.0f} s: {len(SHOTS)} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
