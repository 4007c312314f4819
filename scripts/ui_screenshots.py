"""Take the screenshots of the Prefect UI in docs/ui.md (docs/img/*.png), so they can be refreshed.

Prerequisite: Debian's Chromium, which is not part of `make test` or CI:

    apt-get update && apt-get install -y chromium      # provides /usr/bin/chromium

(another binary can be named with CHROMIUM=/path/to/chromium). Run from the repository root:

    .venv/bin/python scripts/ui_screenshots.py

It makes the 600-item sample when missing (data/sample/items.pkl), then, all on 127.0.0.1 and in a
temporary folder: starts a `prefect server` with a fresh PREFECT_HOME and the OpenAI stub
(tests/openai_stub.py) with one injected transient fault (the first POST /v1/files answers 503), creates
the work pool `ftprep-process`, runs `prefect --no-prompt deploy --all`, starts a process worker pointed at
the stub, runs the deployment `prepare/prepare-sample` with non-default parameters (120/30 examples,
shuffled with seed 7, out in the temporary folder) and waits for it to complete.

Then it drives headless Chromium over the DevTools protocol (with the `websockets` package that Prefect
already depends on): for each page it waits until the text the picture is about is on the page, clicks a
tab where needed, sizes the window to the page's content and saves a PNG. The pictures are the deployment's
run form, the flow run (graph and all logs), the retried upload task run (its logs) and its state events,
the flow run's Artifacts tab, and the `ftprep-files` and `ftprep-validation` artifacts. They replace
docs/img/*.png only when all of them were taken.

Every process it started (server, worker, Chromium, the in-process stub) is stopped at the end, also when
something fails, on Ctrl-C and on SIGTERM; on failure the temporary folder with the server's, the worker's
and Chromium's logs is kept and its path printed. It takes about a minute and needs no network.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.openai_stub import StubOpenAI  # noqa: E402
from tests.prefect_procs import prefect, prefect_server, process, tail, wait_until, worker  # noqa: E402

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
INSTALL = "apt-get update && apt-get install -y chromium"
SAMPLE = ROOT / "data" / "sample" / "items.pkl"
TIKTOKEN_CACHE = ROOT.parent / "shared" / "tiktoken-cache"
DEPLOYMENT = "prepare/prepare-sample"
WINDOW = (1440, 1000)
MAX_HEIGHT = 4000


def log(message: str) -> None:
    print(message, flush=True)


def check_chromium() -> str | None:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return None
    return (f"error: Chromium not found at {CHROMIUM}. The screenshots need Debian's chromium package: run\n"
            f"    {INSTALL}\n"
            "(as root), or set CHROMIUM=/path/to/chromium, then run this script again.")


def make_sample() -> None:
    if SAMPLE.exists():
        return
    log(f"making the 600-item sample {SAMPLE.relative_to(ROOT)}")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "sample.py"), "--n", "600", "--seed", "42",
                    "--out", str(SAMPLE)], cwd=ROOT, check=True)


class Browser:
    """Headless Chromium driven over the DevTools protocol (a real wait for each page's content, clicks).

    The Prefect UI is a single-page app that fetches everything after loading, so each picture waits until
    the text it is meant to show is on the page, then a little longer for charts and fonts to settle.
    """

    def __init__(self, tmp: Path, stack: contextlib.ExitStack) -> None:
        from websockets.sync.client import connect

        profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp))
        args = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"]
        self.log = tmp / "chromium.log"
        self.proc = stack.enter_context(process(args, dict(os.environ), self.log))
        port_file = profile / "DevToolsActivePort"
        wait_until(lambda: port_file.is_file() and port_file.read_text().strip() or self.proc.poll() is not None,
                   30, "chromium's DevTools port")
        if self.proc.poll() is not None:
            raise RuntimeError(f"chromium exited with status {self.proc.returncode}:\n{tail(self.log)}")
        port = port_file.read_text().split()[0]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, proxy=None))
        self.ids = itertools.count(1)
        stack.callback(self.close)

    def close(self) -> None:
        """Ask Chromium to quit, so it stops its own helper processes (SIGTERM to the group follows if not)."""
        with contextlib.suppress(Exception):
            self.ws.send(json.dumps({"id": next(self.ids), "method": "Browser.close"}))
            self.proc.wait(timeout=10)

    def call(self, method: str, **params):
        id_ = next(self.ids)
        self.ws.send(json.dumps({"id": id_, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == id_:
                if "error" in message:
                    raise RuntimeError(f"chromium: {method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def has_text(self, text: str) -> bool:
        return bool(self.js(f"!!document.body && document.body.innerText.includes({json.dumps(text)})"))

    def open(self, url: str, shows: str, tab: str | None = None) -> None:
        """Load ``url``, click the tab named ``tab``, wait for the text ``shows``, then make the viewport as
        high as the page's content (at least WINDOW's height), so the picture has all of it."""
        self.viewport(WINDOW[1])
        self.call("Page.navigate", url=url)
        if tab:
            wait_until(lambda: self.click(".p-tab, [role=tab]", tab), 60, f"the {tab} tab on {url}")
        wait_until(lambda: self.has_text(shows), 60, f"{shows!r} on {url}")
        time.sleep(1)  # the rest of the content
        # The UI scrolls inside its own elements, so the content's height is that of the tallest element.
        content = self.js("Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
        self.viewport(min(max(int(content), WINDOW[1]), MAX_HEIGHT))

    def viewport(self, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=height, deviceScaleFactor=1,
                  mobile=False)

    def click(self, selector: str, text: str) -> bool:
        """Click the first element matching ``selector`` whose text is ``text``; False when there is none."""
        return bool(self.js(f"""(() => {{
            const el = [...document.querySelectorAll({json.dumps(selector)})]
                .find(e => e.innerText.trim() === {json.dumps(text)});
            if (el) el.click();
            return !!el;
        }})()"""))

    def screenshot(self, out: Path, settle: float = 2.0) -> None:
        time.sleep(settle)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out.write_bytes(base64.b64decode(data))


def run_deployment(env: dict[str, str], out: Path, worker_proc, worker_log: Path) -> dict[str, str]:
    """Trigger the deployment with non-default parameters, wait for it, return the ids the pictures need."""
    os.environ.update(PREFECT_HOME=env["PREFECT_HOME"], PREFECT_API_URL=env["PREFECT_API_URL"],
                      PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterTaskRunId

    parameters = {"data": "data/sample/items.pkl", "out": str(out), "template": "course", "upload": True,
                  "split": {"train_size": 120, "validation_size": 30, "shuffle": True, "seed": 7}}
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        log(f"flow run {flow_run.name} ({flow_run.id}) created; waiting for it to complete")

        def finished():
            if worker_proc.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{tail(worker_log)}")
            state = client.read_flow_run(flow_run.id).state
            return state if state and state.is_final() else None

        state = wait_until(finished, 300, "the flow run", interval=1)
        if not state.is_completed():
            raise RuntimeError(f"the flow run ended {state.name}: {state.message}\n{tail(worker_log)}")

        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
        retried = [t for t in task_runs if t.name.startswith("upload") and t.run_count > 1]
        if len(retried) != 1:
            raise RuntimeError(f"expected one retried upload, got {[(t.name, t.run_count) for t in task_runs]}")

        # Logs reach the API in batches, possibly after the run's final state: wait for the retry's reason.
        def retry_logged():
            logs = client.read_logs(LogFilter(task_run_id=LogFilterTaskRunId(any_=[retried[0].id])))
            return any("HTTP 503" in entry.message for entry in logs)

        wait_until(retry_logged, 30, "the retry reason in the upload task's logs")
        artifacts = {a.key: str(a.id) for a in client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))}
        missing = {"ftprep-files", "ftprep-validation"} - set(artifacts)
        if missing:
            raise RuntimeError(f"the flow run made no artifact {sorted(missing)}; it made {sorted(artifacts)}")
        time.sleep(2)  # the flow run's last log lines
        return {"deployment": str(deployment.id), "flow_run": str(flow_run.id), "task_run": str(retried[0].id),
                "files": artifacts["ftprep-files"], "validation": artifacts["ftprep-validation"]}


def take_screenshots(ui: str, ids: dict[str, str], out: Path, tmp: Path) -> list[Path]:
    """The pictures of docs/ui.md: (file, URL, text the page must show first, tab to click first)."""
    shots = [
        ("deployment-run-form.png", f"{ui}/deployments/deployment/{ids['deployment']}/run", "Train Size", None),
        ("flow-run.png", f"{ui}/runs/flow-run/{ids['flow_run']}", "Finished in state Completed", None),
        ("upload-task-run-retry.png", f"{ui}/runs/task-run/{ids['task_run']}", "Retry 1/", None),
        ("upload-task-run-events.png", f"{ui}/events?resource=prefect.task-run.{ids['task_run']}",
         "Task run pending", None),
        ("flow-run-artifacts.png", f"{ui}/runs/flow-run/{ids['flow_run']}", "ftprep-token-stats", "Artifacts"),
        ("artifact-ftprep-files.png", f"{ui}/artifacts/artifact/{ids['files']}", "fine_tune_train.", None),
        ("artifact-ftprep-validation.png", f"{ui}/artifacts/artifact/{ids['validation']}", "Validation:", None),
    ]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with contextlib.ExitStack() as stack:
        browser = Browser(tmp, stack)
        for name, url, shows, tab in shots:
            browser.open(url, shows, tab)
            browser.screenshot(out / name)
            written.append(out / name)
            log(f"  {name}  <- {url}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder for the PNGs (docs/img)")
    args = parser.parse_args(argv)

    # Processes run in their own sessions: make SIGTERM unwind like Ctrl-C, so they are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    problem = check_chromium()
    if problem:
        print(problem, file=sys.stderr)
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
            with worker(env, worker_log, OPENAI_API_KEY=stub.api_key, OPENAI_BASE_URL=stub.base_url,
                        TIKTOKEN_CACHE_DIR=str(TIKTOKEN_CACHE), FTPREP_RETRY_BASE_SECONDS="0.5") as worker_proc:
                ids = run_deployment(env, tmp / "out", worker_proc, worker_log)
                log("taking screenshots")  # with the worker still running, so its queue shows as ready
                shots = take_screenshots(env["PREFECT_API_URL"].removesuffix("/api"), ids, tmp / "img", tmp)
        for shot in shots:
            shutil.copyfile(shot, args.out / shot.name)
        ok = True
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"failed; docs/img is unchanged; the server's, worker's and Chromium's logs are in {tmp}",
                  file=sys.stderr)
    log(f"done in {time.monotonic() - started:.0f} s: {len(shots)} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
