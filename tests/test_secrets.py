"""The API key never lands in logs, artifacts, persisted results, the manifest, the database or errors."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

from flows.prepare import prepare
from ftprep.models import SplitConfig
from tests.openai_stub import StubOpenAI
from tests.prefect_api import read_all, run_logs, run_task_runs, settle


def files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass
    return hits


def test_key_is_nowhere_after_runs_with_faults(tmp_path, monkeypatch, prefect_server, sample_pickle, capfd):
    key = "sk-test-" + secrets.token_hex(20)  # made up per run: a real key never appears in the tests
    monkeypatch.chdir(tmp_path)
    with StubOpenAI(api_key=key) as stub:
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
        stub.inject("POST", "/v1/files", "status", status=429, retry_after=0.1)
        stub.inject("POST", "/v1/files", "store_then_drop")
        stub.inject("GET", "/v1/files", "reset")
        ok = prepare(data=str(sample_pickle), out=str(tmp_path / "out"),
                     split=SplitConfig(train_size=77, validation_size=11), return_state=True)
        assert ok.is_completed(), ok.message
        # some proxies and OpenAI-compatible servers echo the key in their error body
        stub.inject("*", "/v1/files*", "status", status=401, times=None, message=f"Incorrect API key provided: {key}")
        failed = prepare(data=str(sample_pickle), out=str(tmp_path / "out2"),
                         split=SplitConfig(train_size=78, validation_size=11), return_state=True)
        assert failed.is_failed()
        assert len(stub.files_for()) == 2

    texts: list[str] = [str(failed.message), str(ok.message)]
    run_ids = [ok.state_details.flow_run_id, failed.state_details.flow_run_id]
    with get_client(sync_client=True) as client:
        # Logs, task runs and their states reach the server after the flow returns (a log worker sending every
        # 2 s, events recorded in the background): search them only once they have all arrived.
        settle(client, run_ids)
        for run_id in run_ids:
            texts += [log.message for log in run_logs(client, run_id)]
            run = client.read_flow_run(run_id)
            texts += [str(run.parameters), str(run.state.message)]
            for task_run in run_task_runs(client, run_id):
                states = client.read_task_run_states(task_run.id)
                texts += [str(task_run.state.message)] + [str(s.message) for s in states]
        artifacts = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids))
        texts += [str(a.data) for a in read_all(lambda limit, offset: client.read_artifacts(
            artifact_filter=artifacts, limit=limit, offset=offset))]
        texts += [str(v.value) for v in client.read_variables()]
    assert len(texts) > 50 and any("Uploaded" in t or "Reused" in t for t in texts)
    assert not [t for t in texts if key in t]

    captured = capfd.readouterr()
    assert key not in captured.out + captured.err
    needle = key.encode()
    db = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///", 1)[1]).parent
    assert files_containing(Path(os.environ["PREFECT_HOME"]), needle) == []  # results, cache keys, storage
    assert files_containing(db, needle) == []  # the API server's database
    assert files_containing(tmp_path / "out", needle) == [] and (tmp_path / "out" / "manifest.json").exists()


def test_credentials_in_the_base_url_are_nowhere(tmp_path, monkeypatch, prefect_server, sample_pickle, capfd):
    key = "sk-test-" + secrets.token_hex(20)
    monkeypatch.chdir(tmp_path)
    with StubOpenAI(api_key=key) as stub:
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url.replace("http://", f"http://alice:{key}@"))
        state = prepare(data=str(sample_pickle), out=str(tmp_path / "out"),
                        split=SplitConfig(train_size=31, validation_size=10), return_state=True)
        assert state.is_completed(), state.message
        assert len(stub.files_for()) == 2
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert "alice" not in manifest and f'"remote": "{stub.base_url}"' in manifest
    texts = [str(state.message)]
    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id
        settle(client, [run_id])
        texts += [log.message for log in run_logs(client, run_id)]
        artifacts = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        texts += [str(a.data) for a in client.read_artifacts(artifact_filter=artifacts)]
        texts += [str(v.value) for v in client.read_variables()]
    assert not [t for t in texts if key in t or "alice:" in t]
    captured = capfd.readouterr()
    assert key not in captured.out + captured.err
    assert files_containing(Path(os.environ["PREFECT_HOME"]), key.encode()) == []


def test_settings_never_print_or_pickle_the_key(monkeypatch):
    import pickle

    from ftprep.settings import load_settings

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-printed")
    settings = load_settings()
    assert settings.api_key.get_secret_value() == "sk-test-not-printed"
    assert "not-printed" not in repr(settings) + str(settings) + f"{settings.api_key}"
    with pytest.raises(TypeError):
        pickle.dumps(settings.api_key)


def _files_listing_a_secret(written, secret: str) -> str:
    """GET /v1/files as a broken OpenAI-compatible server might answer it: the two files just written, stored and
    processed, with ``secret`` where a timestamp belongs (the upload task then fails in pydantic, unexpectedly,
    with the value in its message)."""
    import json

    from tasks.upload import remote_name

    data = [{"id": f"file-{f.role}", "object": "file", "bytes": f.bytes, "created_at": secret,
             "filename": remote_name(f.path, f.sha256), "purpose": "fine-tune", "status": "processed"}
            for f in written.files()]
    return json.dumps({"object": "list", "data": data, "has_more": False})


def test_an_unexpected_error_carrying_secrets_leaves_nothing_secret(tmp_path, monkeypatch, prefect_server,
                                                                    sample_pickle, capfd, cli_env):
    """A bug's exception text reaches Prefect (task and flow run states, the persisted result, the logs with
    their tracebacks) and the terminal redacted, with its traceback kept."""
    import subprocess
    import sys

    key = "sk-test-" + secrets.token_hex(8)  # short enough that pydantic's error message shows it whole
    password = secrets.token_hex(8)  # not key-shaped: only the registered secret hides it
    monkeypatch.chdir(tmp_path)
    split = SplitConfig(train_size=33, validation_size=10)
    with StubOpenAI(api_key=key) as stub:
        base_url = stub.base_url.replace("http://", f"http://alice:{password}@")
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("OPENAI_BASE_URL", base_url)
        written = prepare(data=str(sample_pickle), out=str(tmp_path / "out"), split=split, upload=False).files
        stub.inject("GET", "/v1/files", "malformed_json", times=None,
                    body=_files_listing_a_secret(written, f"{key}/{password}"))
        failed = prepare(data=str(sample_pickle), out=str(tmp_path / "out"), split=split, return_state=True)
        assert failed.is_failed()
        assert "RedactedError: ValidationError: 1 validation error for RemoteFile" in failed.message
        assert "input_value='(redacted)/(redacted)'" in failed.message  # the secrets were there, whole
        persisted = failed.result(raise_on_failure=False)  # read back from the result store
        assert type(persisted).__name__ == "RedactedError" and "(redacted)/(redacted)" in str(persisted)

        env = dict(cli_env, OPENAI_API_KEY=key, OPENAI_BASE_URL=base_url)
        ftprep = str(Path(sys.executable).parent / "ftprep")
        run = subprocess.run([ftprep, "prepare", "--data", str(sample_pickle), "--out", str(tmp_path / "out"),
                              "--train-size", "33", "--validation-size", "10"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=180)
        assert stub.count("POST") == 0  # nothing was uploaded: the broken listing said the files were there

    # a bug keeps its traceback (exit 1, as Python's own), redacted
    assert run.returncode == 1, run.stderr
    terminal = run.stdout + run.stderr
    assert "Traceback (most recent call last)" in terminal and "RedactedError: ValidationError" in terminal
    assert key not in terminal and password not in terminal

    texts: list[str] = [str(failed.message), str(persisted)]
    run_id = failed.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        settle(client, [run_id])
        logs = [log.message for log in run_logs(client, run_id)]
        assert any("Traceback (most recent call last)" in m and "RedactedError" in m for m in logs)
        texts += logs
        flow_run = client.read_flow_run(run_id)
        texts += [str(flow_run.state.message)] + [str(s.message) for s in client.read_flow_run_states(run_id)]
        task_runs = run_task_runs(client, run_id)
        upload = [t for t in task_runs if t.name.startswith("upload-")]
        assert upload and all(t.state.is_failed() for t in upload)
        assert "RedactedError: ValidationError" in str(upload[0].state.message)
        for task_run in task_runs:
            texts += [str(task_run.state.message)] + [str(s.message) for s in client.read_task_run_states(task_run.id)]
    assert not [t for t in texts if key in t or password in t]
    captured = capfd.readouterr()
    assert key not in captured.out + captured.err and password not in captured.out + captured.err
    for needle in (key.encode(), password.encode()):
        assert files_containing(Path(os.environ["PREFECT_HOME"]), needle) == []
        assert files_containing(tmp_path, needle) == []  # the run's result store, cache records, the outputs


def test_a_flow_that_fails_with_a_secret_in_its_own_code_is_redacted(monkeypatch, prefect_server, tmp_path):
    """The flow body, not a task: its state message, persisted result and logs are redacted too."""
    from ftprep.settings import load_settings
    from ftprep.steps import flow

    password = secrets.token_hex(8)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", f"https://bob:{password}@llm.example.com/v1")

    @flow(name="ftprep-test-secret-in-a-bug", persist_result=True, result_serializer="json")
    def buggy() -> None:
        base_url = load_settings().base_url
        try:
            int(base_url)
        except ValueError as e:
            raise RuntimeError(f"cannot talk to {base_url}") from e

    state = buggy(return_state=True)
    assert state.is_failed()
    assert state.message == ("Flow run encountered an exception: RedactedError: RuntimeError: cannot talk to "
                             "https://(redacted)@llm.example.com/v1")
    persisted = state.result(raise_on_failure=False)
    assert str(persisted) == "RuntimeError: cannot talk to https://(redacted)@llm.example.com/v1"
    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id
        settle(client, [run_id])
        logs = [log.message for log in run_logs(client, run_id)]
        texts = logs + [str(client.read_flow_run(run_id).state.message)]
    # the traceback is kept, with the exception it was raised from as a redacted note
    assert any("Traceback (most recent call last)" in m and "raised from:" in m and "invalid literal for int()" in m
               for m in logs), logs
    assert not [t for t in texts if password in t]
    assert files_containing(tmp_path, password.encode()) == []


def test_every_task_and_flow_is_made_with_ftprep_steps():
    """The redaction of unexpected errors lives in ftprep.steps: a task made with prefect.task would bypass it."""
    import importlib
    import pkgutil

    from prefect import Flow, Task

    import flows
    import tasks

    found = []
    for package in (tasks, flows):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            found += [(f"{module.__name__}.{name}", obj) for name, obj in vars(module).items()
                      if isinstance(obj, (Task, Flow)) and obj.fn.__module__ == module.__name__]
    assert len(found) >= 20
    assert [name for name, obj in found if getattr(obj.fn, "__prefect_task_source__", None) is not
            getattr(obj.fn, "__wrapped__", 0)] == []
