"""The prepare flow under a real Prefect API server, uploading through the real SDK to the stub."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.variables import Variable

from flows.prepare import prepare
from ftprep.models import PrepareResult, SplitConfig
from ftprep.names import ARTIFACT_FILES as ARTIFACT_KEY
from ftprep.names import LATEST_FILES as VARIABLE_NAME
from tests import reference_notebook as nb
from tests.prefect_api import run_task_runs, settle

pytestmark = pytest.mark.usefixtures("prefect_server")


def states_by_task(flow_run_id) -> dict[str, list[str]]:
    """Task name (``load``, ``upload``, ...) -> the final state names of its runs in one flow run.

    The server records task states from events, after the flow run has returned: ``settle`` waits for them.
    """
    with get_client(sync_client=True) as client:
        settle(client, [flow_run_id])
        runs = run_task_runs(client, flow_run_id)
    out: dict[str, list[str]] = {}
    for r in runs:
        out.setdefault(r.name.rsplit("-", 1)[0], []).append(r.state.name)
    return out


def test_full_run_uploads_persists_and_second_run_is_cached(tmp_path, monkeypatch, openai_env, sample_pickle):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"

    state = prepare(data=str(sample_pickle), out=str(out), return_state=True)
    assert state.is_completed(), state.message
    result: PrepareResult = state.result()

    # Two files went up, as fine-tune files, with exactly the bytes written locally.
    posts = [r for r in openai_env.requests if r.method == "POST" and r.path == "/v1/files"]
    assert len(posts) == 2 and {p.form["purpose"] for p in posts} == {"fine-tune"}
    stored = {f.id: f for f in openai_env.files_for("fine-tune")}
    assert {f.role for f in result.uploaded} == {"train", "validation"}
    for remote in result.uploaded:
        local = Path(getattr(result.files, remote.role).path).read_bytes()
        assert stored[remote.id].read_bytes() == local
        assert remote.sha256 == hashlib.sha256(local).hexdigest() and remote.bytes == len(local)
        assert remote.status == "processed" and remote.purpose == "fine-tune" and not remote.reused
    assert result.files.train.examples == 500 and result.files.validation.examples == 50

    # Every written line is the course notebook's formatting of items[0:500] and items[500:550].
    from scripts.sample import generate_items

    items = [nb.Item(r) for r in generate_items(600)]
    for role, chunk in (("train", items[:500]), ("validation", items[500:550])):
        lines = Path(getattr(result.files, role).path).read_text().splitlines()
        assert [json.loads(x) for x in lines] == [json.loads(x) for x in nb.make_jsonl(chunk).split("\n")]

    # Persisted: the flow run's result reads back from storage through the API as the same object.
    with get_client(sync_client=True) as client:
        api_state = client.read_flow_run(state.state_details.flow_run_id).state
    assert PrepareResult.model_validate(api_state.result()) == result
    # ... in the Variable, the artifact and the manifest beside the files.
    value = Variable.get(VARIABLE_NAME)
    assert value["train_file_id"] == result.remote_file("train").id
    assert value["validation_file_id"] == result.remote_file("validation").id
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])),
                                            limit=1, sort="CREATED_DESC")
    table = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    assert {row["file_id"] for row in table} == {f.id for f in result.uploaded}
    manifest = PrepareResult.model_validate_json((out / "manifest.json").read_text())
    assert manifest == result

    # Second identical run: the work shows as Cached, the upload re-checks the remote copies and reuses them:
    # nothing is sent, and the same file objects come back, marked reused.
    openai_env.reset_records()
    state2 = prepare(data=str(sample_pickle), out=str(out), return_state=True)
    assert state2.is_completed(), state2.message
    again = state2.result()
    assert [(f.id, f.sha256, f.bytes) for f in again.uploaded] == [(f.id, f.sha256, f.bytes) for f in result.uploaded]
    assert all(f.reused for f in again.uploaded)
    assert openai_env.count("POST") == 0 and len(openai_env.files_for()) == 2
    states = states_by_task(state2.state_details.flow_run_id)
    for name in ("load", "split", "format", "write", "validate"):
        assert states[name] and set(states[name]) == {"Cached"}, (name, states)
    assert states["upload"] == ["Completed", "Completed"]

    # A remote file deleted since (say, by hand in OpenAI's dashboard): the next run uploads only that one.
    gone = result.remote_file("validation").id
    from ftprep.client import make_client
    from ftprep.settings import load_settings

    make_client(load_settings()).files.delete(gone)
    third = prepare(data=str(sample_pickle), out=str(out))
    assert third.remote_file("train").reused and third.remote_file("train").id == result.remote_file("train").id
    assert not third.remote_file("validation").reused and third.remote_file("validation").id != gone
    assert openai_env.count("POST", "/v1/files", exact=True) == 1


def test_rewrites_files_that_changed_since_the_cached_write(tmp_path, monkeypatch, sample_pickle):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    first = prepare(data=str(sample_pickle), out=str(out), upload=False)
    (out / "fine_tune_train.jsonl").write_text("edited by hand\n")
    second = prepare(data=str(sample_pickle), out=str(out), upload=False)
    assert (out / "fine_tune_train.jsonl").read_bytes() != b"edited by hand\n"
    assert hashlib.sha256((out / "fine_tune_train.jsonl").read_bytes()).hexdigest() == first.files.train.sha256
    assert second.files.train.sha256 == first.files.train.sha256


def test_no_key_writes_files_and_skips_upload(tmp_path, monkeypatch, sample_pickle, openai_stub):
    monkeypatch.chdir(tmp_path)
    result = prepare(data=str(sample_pickle), out=str(tmp_path / "out"),
                     split=SplitConfig(train_size=100, validation_size=20, shuffle=True, seed=3))
    assert result.uploaded == () and "OPENAI_API_KEY is not set" in result.upload_skipped_reason
    assert result.files.train.examples == 100 and result.files.validation.examples == 20
    assert openai_stub.requests == []


def test_invalid_output_fails_at_validate_and_uploads_nothing(tmp_path, monkeypatch, openai_env):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}", "answer": "" if i % 2 else f"a{i}"}) + "\n"
                            for i in range(40)))
    template = tmp_path / "qa.toml"
    template.write_text('user = "{question}"\nassistant = "{answer}"\n')
    state = prepare(data=str(data), template=str(template), out=str(tmp_path / "out"),
                    split=SplitConfig(train_size=20, validation_size=10), return_state=True)
    assert state.is_failed()
    assert "validation failed" in state.message and "empty_content" in state.message
    states = states_by_task(state.state_details.flow_run_id)
    assert states["validate"] == ["Failed"] and "upload" not in states
    assert openai_env.count("POST") == 0 and openai_env.files_for() == []
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ftprep-validation"])), limit=1,
            sort="CREATED_DESC")
    assert "`empty_content`" in artifact.data and "NOT valid" in artifact.data


def test_price_override_is_not_hidden_by_the_cache(tmp_path, monkeypatch, sample_pickle):
    monkeypatch.chdir(tmp_path)
    first = prepare(data=str(sample_pickle), out=str(tmp_path / "out"), upload=False,
                    split=SplitConfig(train_size=33, validation_size=11))
    monkeypatch.setenv("FTPREP_TRAINING_PRICE_PER_1M", "100")
    second = prepare(data=str(sample_pickle), out=str(tmp_path / "out"), upload=False,
                     split=SplitConfig(train_size=33, validation_size=11))
    assert first.validation.price_per_1m_tokens == 3.0 and first.validation.price_as_of
    assert second.validation.price_per_1m_tokens == 100.0 and second.validation.price_as_of is None
    expected = first.validation.estimated_cost_usd * 100 / 3
    assert second.validation.estimated_cost_usd == pytest.approx(expected, rel=1e-3)


def test_the_dataset_report_has_pictures_committed_with_the_files(tmp_path, monkeypatch, sample_pickle):
    from prefect import get_client

    from ftprep.names import ARTIFACT_CHARTS, CHART_TARGETS, CHART_TOKENS

    monkeypatch.chdir(tmp_path)
    prepare(data=str(sample_pickle), out=str(tmp_path / "out"), upload=False,
            split=SplitConfig(train_size=120, validation_size=20))
    for name in (CHART_TOKENS, CHART_TARGETS):
        assert (tmp_path / "out" / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with get_client(sync_client=True) as client:
        art = client.read_latest_artifacts()
        charts = [a for a in art if a.key == ARTIFACT_CHARTS]
    assert charts and charts[0].data.count("data:image/png;base64,") == 2
    # a template with no target field draws only the token picture
    template = tmp_path / "plain.toml"
    template.write_text('user = "{course_question}"\nassistant = "{price:.2f}"\n')
    prepare(data=str(sample_pickle), out=str(tmp_path / "plain"), upload=False, template=str(template),
            split=SplitConfig(train_size=120, validation_size=20))
    assert (tmp_path / "plain" / CHART_TOKENS).exists() and not (tmp_path / "plain" / CHART_TARGETS).exists()


def test_only_a_long_write_makes_a_progress_artifact(tmp_path, monkeypatch, sample_pickle):
    """The everyday write is over before anyone could look at a progress bar: it spends no API calls on one."""
    import tasks.write
    from ftprep.names import ARTIFACT_WRITE_PROGRESS, artifact_key

    def progress_artifacts(project: str) -> list:
        key = artifact_key(ARTIFACT_WRITE_PROGRESS, project)
        with get_client(sync_client=True) as client:
            return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    monkeypatch.chdir(tmp_path)
    prepare(data=str(sample_pickle), out=str(tmp_path / "short"), upload=False, project="progress-short")
    assert progress_artifacts("progress-short") == []
    monkeypatch.setattr(tasks.write, "PROGRESS_AFTER", 0.0)  # every write is "long"
    lines: list[str] = []
    collect = logging.Handler(level=logging.INFO)
    collect.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("prefect.task_runs").addHandler(collect)  # (run loggers do not reach caplog)
    try:
        prepare(data=str(sample_pickle), out=str(tmp_path / "long"), upload=False, project="progress-long",
                split=SplitConfig(train_size=300, validation_size=20))
    finally:
        logging.getLogger("prefect.task_runs").removeHandler(collect)
    (artifact,) = progress_artifacts("progress-long")
    assert artifact.type == "progress" and float(artifact.data) == 100.0
    # the log lines say each file's count and all files' (validation is written first)
    assert [line for line in lines if line.startswith("Writing ")] == [
        "Writing validation examples: 20 of 20; all files: 20 of 320 (6%)",
        "Writing train examples: 300 of 300; all files: 320 of 320 (100%)"]


def test_a_hung_chart_process_costs_the_run_its_pictures_not_its_files(tmp_path, monkeypatch, sample_pickle):
    import os
    import signal

    import tasks.chart_draw
    from tasks.chart_draw import Painter

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tasks.chart_draw, "CHART_SECONDS", 1.0)
    painter = Painter.shared()  # the one the run will use
    os.kill(painter._child.pid, signal.SIGSTOP)
    result = prepare(data=str(sample_pickle), out=str(tmp_path / "out"), upload=False,
                     split=SplitConfig(train_size=60, validation_size=10))
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert names == ["fine_tune_train.jsonl", "fine_tune_validation.jsonl", "manifest.json"]
    assert result.validation.ok and result.files.train.examples == 60
    assert not painter.alive() and Painter.shared().alive()  # the next run draws again
