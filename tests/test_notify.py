"""The failure notification end to end: `ftprep notify` (twice) against a real `prefect server`, a prepare run
that fails on an expected error through the CLI, runs of deployments that fail or crash, and the messages a small
webhook receiver on 127.0.0.1 gets: one per prepare or fine-tune run, with its error and a link, without a secret.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.prefect_api import client_of
from tests.prefect_procs import prefect_server, tail, wait_until

FTPREP = str(Path(sys.executable).parent / "ftprep")
KEY = "sk-test-notify-0123456789abcdef"
HOOK_SECRET = "T000/B000/notify-hook-secret"


class Receiver:
    """An HTTP server on 127.0.0.1 (random port) that records every request's path and body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []
        lock = threading.Lock()
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append((self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/{HOOK_SECRET}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def ftprep(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FTPREP, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_failed_or_crashed_prepare_and_fine_tune_runs_post_one_message_each(tmp_path, receiver):
    from prefect.states import Crashed, Failed

    from ftprep.names import FLOW_EVALUATE, FLOW_FINE_TUNE, FLOW_PREPARE, NOTIFY_AUTOMATION, NOTIFY_BLOCK

    server_log = tmp_path / "server.log"
    # The link comes from PREFECT_UI_URL in the server's environment, as the README says to set it.
    ui_url = "http://prefect-ui.test:4200"
    with prefect_server(tmp_path / "prefect-home", server_log, PREFECT_UI_URL=ui_url) as env:
        # Twice: the second run updates the block and the automation instead of adding copies.
        first = ftprep(env, tmp_path, "notify", "--webhook-url", receiver.url)
        assert first.returncode == 0, first.stderr
        assert "created" in first.stdout and HOOK_SECRET not in first.stdout + first.stderr
        second = ftprep(dict(env, FTPREP_NOTIFY_WEBHOOK_URL=receiver.url), tmp_path, "notify")
        assert second.returncode == 0, second.stderr
        assert "created" not in second.stdout and second.stdout.count("updated") == 2, second.stdout
        assert HOOK_SECRET not in second.stdout + second.stderr

        with client_of(env["PREFECT_API_URL"]) as client:
            assert len(client.read_automations_by_name(NOTIFY_AUTOMATION)) == 1
            blocks = [b for b in client.read_block_documents(include_secrets=False) if b.name == NOTIFY_BLOCK]
            assert len(blocks) == 1 and HOOK_SECRET not in str(blocks[0].data)  # the URL is a masked secret

        # A run that fails on an expected error: 20 records, and the default split wants 500 + 50.
        data = tmp_path / "few.jsonl"
        prompt = "How much does this cost to the nearest dollar?\n\nThing {}\n\nPrice is $3.00"
        data.write_text("".join(json.dumps({"prompt": prompt.format(i), "price": 3.0 + i}) + "\n" for i in range(20)))
        run_env = dict(env, OPENAI_API_KEY=KEY, OPENAI_BASE_URL="http://127.0.0.1:9/v1")
        failed = ftprep(run_env, tmp_path, "prepare", "--data", str(data), "--out", "out")
        assert failed.returncode == 2, failed.stdout + failed.stderr
        error_line = failed.stderr.strip().splitlines()[-1].removeprefix("error: ")

        wait_until(lambda: receiver.requests, 60, f"the notification\n{tail(server_log)}", interval=0.25)
        with client_of(env["PREFECT_API_URL"]) as client:
            (cli_run,) = client.read_flow_runs()
            # Runs of deployments, ended by the API as a worker would report them: a scheduled prepare run that
            # fails, a fine-tune run that crashes, and an evaluate run that fails (not notified).
            ended = {name: ended_deployment_run(client, name, state)
                     for name, state in ((FLOW_PREPARE, Failed), (FLOW_FINE_TUNE, Crashed), (FLOW_EVALUATE, Failed))}
        wait_until(lambda: len(receiver.requests) >= 3, 60, f"three notifications\n{tail(server_log)}", interval=0.25)
        time.sleep(3)  # a duplicate, or a message for the evaluate run, would come within this
    texts = {}
    for path, raw in receiver.requests:
        assert path == f"/hook/{HOOK_SECRET}"
        text = json.loads(raw)["text"]
        assert KEY not in text and HOOK_SECRET not in text
        texts.setdefault(text.split(" run ", 1)[0], []).append(text)
    assert sorted(texts) == ["ftprep: fine-tune", "ftprep: prepare"], texts
    assert len(texts["ftprep: prepare"]) == 2 and len(texts["ftprep: fine-tune"]) == 1, texts

    cli_text = next(t for t in texts["ftprep: prepare"] if cli_run.name in t)
    assert cli_text.startswith(f"ftprep: prepare run {cli_run.name} failed: "), cli_text
    assert error_line in cli_text, (error_line, cli_text)
    assert cli_text.endswith(f"\n{ui_url}/runs/flow-run/{cli_run.id}"), cli_text
    for flow_name, state_name in ((FLOW_PREPARE, "failed"), (FLOW_FINE_TUNE, "crashed")):
        run = ended[flow_name]
        (text,) = [t for t in texts[f"ftprep: {flow_name}"] if run.name in t]
        assert text == (f"ftprep: {flow_name} run {run.name} (deployment {flow_name}-deployment) {state_name}: "
                        f"{MESSAGE}\n{ui_url}/runs/flow-run/{run.id}")


MESSAGE = "InputError: the data file is gone; restore it"


def ended_deployment_run(client, flow_name: str, state):
    """A run of a deployment of ``flow_name`` (no worker needed), moved to Running and then to ``state``."""
    from prefect.states import Running

    flow_id = client.create_flow_from_name(flow_name)
    deployment_id = client.create_deployment(flow_id, f"{flow_name}-deployment")
    run = client.create_flow_run_from_deployment(deployment_id)
    client.set_flow_run_state(run.id, Running(), force=True)
    client.set_flow_run_state(run.id, state(message=MESSAGE), force=True)
    return client.read_flow_run(run.id)


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "error: no webhook URL: give --webhook-url URL or set FTPREP_NOTIFY_WEBHOOK_URL"),
    ({"FTPREP_NOTIFY_WEBHOOK_URL": "ftp://hooks.example.test/x"}, "error: the webhook URL is not an http(s) URL"),
    ({"FTPREP_NOTIFY_WEBHOOK_URL": "https://hooks.example.test/T1/B1/x"}, "error: PREFECT_API_URL is not set"),
])
def test_notify_says_what_is_missing_in_one_line(tmp_path, monkeypatch, capsys, env, expected):
    from cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("FTPREP_NOTIFY_WEBHOOK_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["notify"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1, err
    assert "/T1/B1/x" not in err


def test_the_webhook_url_is_a_secret_setting(monkeypatch, tmp_path):
    from ftprep.redact import redact
    from ftprep.settings import load_settings

    url = "https://hooks.example.test/services/T2/B2/s3cr3t-path"
    monkeypatch.setenv("FTPREP_NOTIFY_WEBHOOK_URL", url)
    settings = load_settings(tmp_path / "none.env")
    assert url in settings.secrets() and url not in repr(settings)
    assert url not in redact(f"posting to {url}")
