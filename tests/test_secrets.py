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
