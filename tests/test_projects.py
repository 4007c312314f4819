"""Projects: two datasets (or teammates) on one Prefect server keep their own "latest" Variables and artifacts."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.variables import Variable
from pydantic import TypeAdapter

from flows.evaluate import evaluate
from flows.prepare import prepare
from ftprep.models import PrepareResult, SplitConfig
from ftprep.names import (
    ARTIFACT_FILES,
    DEFAULT_PROJECT,
    LATEST_FILES,
    LATEST_JOB,
    LATEST_MODEL,
    PROJECT_MAX,
    artifact_key,
    artifact_openai_file,
    variable_name,
)
from tests.prefect_api import read_all
from tests.test_cli import ftprep_main  # noqa: F401 - the fixture: ``ftprep ARGS`` in this process

FTPREP = str(Path(sys.executable).parent / "ftprep")
RULE = ("a project name is 1 to 63 lowercase letters, digits and single dashes, starting and ending with a letter or "
        "digit (e.g. team-a)")


def new_project() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"  # unique per test: the session's Prefect server is shared


@pytest.fixture
def projects(prefect_server) -> Iterator[tuple[str, str]]:
    """Two fresh project names; their Variables are removed afterwards."""
    pair = (new_project(), new_project())
    yield pair
    for project in pair:
        for base in (LATEST_FILES, LATEST_JOB, LATEST_MODEL):
            Variable.unset(variable_name(base, project))


def artifacts(key: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                     sort="CREATED_DESC")


def table(artifact) -> list[dict]:
    return artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)


def test_the_default_project_keeps_the_plain_names_and_every_name_is_valid_for_prefect():
    from prefect.types.names import ArtifactKey, VariableName

    assert variable_name(LATEST_FILES, DEFAULT_PROJECT) == "ftprep_latest_files"
    assert artifact_key(ARTIFACT_FILES, DEFAULT_PROJECT) == "ftprep-files"
    assert artifact_openai_file("train") == "ftprep-openai-train"
    assert variable_name(LATEST_MODEL, "team-a") == "ftprep_latest_model__team-a"
    assert artifact_key(ARTIFACT_FILES, "team-a") == "ftprep-files--team-a"
    for project in ("team-a", "7", "a" * PROJECT_MAX, "x1-y2-z3"):
        for base in (LATEST_FILES, LATEST_JOB, LATEST_MODEL):
            TypeAdapter(VariableName).validate_python(variable_name(base, project))  # Prefect's own rules
        for key in (artifact_key(ARTIFACT_FILES, project), artifact_openai_file("validation", project)):
            TypeAdapter(ArtifactKey).validate_python(key)


def test_two_projects_keep_their_own_latest_and_fine_tune_uses_its_own(tmp_path, monkeypatch, openai_env,
                                                                      sample_pickle, cli_env, projects):
    monkeypatch.chdir(tmp_path)
    a, b = projects
    # Two datasets of one team on one server: different files, each published under its project.
    res_a = prepare(data=str(sample_pickle), out=str(tmp_path / "a"), project=a,
                    split=SplitConfig(train_size=30, validation_size=10))
    res_b = prepare(data=str(sample_pickle), out=str(tmp_path / "b"), project=b,
                    split=SplitConfig(train_size=40, validation_size=10, train_offset=100))
    ids_a = {f.role: f.id for f in res_a.uploaded}
    ids_b = {f.role: f.id for f in res_b.uploaded}
    assert len(ids_a) == len(ids_b) == 2 and not set(ids_a.values()) & set(ids_b.values())

    # The result, the manifest and the Variable each record their project; b's prepare did not overwrite a's.
    assert (res_a.project, res_b.project) == (a, b)
    assert PrepareResult.model_validate_json((tmp_path / "b" / "manifest.json").read_text()).project == b
    for project, ids in ((a, ids_a), (b, ids_b)):
        value = Variable.get(f"ftprep_latest_files__{project}")
        assert value["project"] == project
        assert (value["train_file_id"], value["validation_file_id"]) == (ids["train"], ids["validation"])
        (files,) = artifacts(f"ftprep-files--{project}")
        assert {row["file_id"] for row in table(files)} == set(ids.values())
        assert len(artifacts(f"ftprep-validation--{project}")) == 1
    default = Variable.get(LATEST_FILES)  # the default project's "latest" is neither of them
    assert not isinstance(default, dict) or default.get("train_file_id") not in (ids_a["train"], ids_b["train"])

    # ftprep fine-tune --project b: b's files, not a's (the latest prepared ones on this server)
    env = dict(cli_env, OPENAI_API_KEY=openai_env.api_key, OPENAI_BASE_URL=openai_env.base_url)
    run = subprocess.run([FTPREP, "fine-tune", "--project", b, "--poll-seconds", "0.05", "--json"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    (job,) = openai_env.jobs
    assert (job["training_file"], job["validation_file"]) == (ids_b["train"], ids_b["validation"])
    result = json.loads(run.stdout)
    assert result["project"] == b and result["status"] == "succeeded"
    assert Variable.get(f"ftprep_latest_model__{b}")["fine_tuned_model"] == result["fine_tuned_model"]
    assert Variable.get(f"ftprep_latest_job__{b}")["job_id"] == job["id"]
    assert Variable.get(f"ftprep_latest_model__{a}") is None and Variable.get(f"ftprep_latest_job__{a}") is None
    assert len(artifacts(f"ftprep-fine-tune--{b}")) == 1 and artifacts(f"ftprep-fine-tune--{a}") == []

    # evaluate --project b compares b's model, with the baseline from b's training file; a has no model yet
    comparison = evaluate(data=str(sample_pickle), out=str(tmp_path / "eval"), n=4, concurrency=2, project=b)
    assert comparison.project == b and comparison.job_id == job["id"]
    assert [r.model for r in comparison.rows] == [result["fine_tuned_model"], job["model"], "baseline: training mean"]
    assert len(artifacts(f"ftprep-comparison--{b}")) == 1
    state = evaluate(data=str(sample_pickle), out=str(tmp_path / "eval-a"), n=4, project=a, return_state=True)
    assert state.is_failed()
    assert (f"no fine-tuned model yet (Prefect Variable 'ftprep_latest_model__{a}' is empty): run fine-tune "
            f"--project {a} first, or pass --model") in state.message


@pytest.mark.parametrize("bad", ["Team-A", "team_a", "a--b", "-a", "a" * (PROJECT_MAX + 1)])
def test_a_bad_project_option_is_one_line_and_nothing_is_written_or_uploaded(tmp_path, ftprep_main, openai_stub,  # noqa: F811
                                                                             sample_pickle, bad):
    env = {"OPENAI_API_KEY": openai_stub.api_key, "OPENAI_BASE_URL": openai_stub.base_url}
    run = ftprep_main(["prepare", "--data", str(sample_pickle), "--out", str(tmp_path / "out"), f"--project={bad}"],
                      env)
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: project (--project) {bad!r} is not allowed: {RULE}", run.stderr
    assert not (tmp_path / "out").exists() and openai_stub.requests == []


def test_a_bad_project_setting_stops_the_command_before_any_flow_run(tmp_path, ftprep_main, openai_stub,  # noqa: F811
                                                                      sample_pickle):
    """The command checks the settings before its flow runs: no failed run on the server, no failure notice."""
    out = tmp_path / f"out-{uuid.uuid4().hex}"  # names this command's flow run, should one be made
    env = {"OPENAI_API_KEY": openai_stub.api_key, "OPENAI_BASE_URL": openai_stub.base_url, "FTPREP_PROJECT": "Team A"}
    run = ftprep_main(["prepare", "--data", str(sample_pickle), "--out", str(out)], env)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == (f"error: FTPREP_PROJECT='Team A' is invalid (value error, {RULE}); set it to a "
                                  "valid value or unset it"), run.stderr
    with get_client(sync_client=True) as client:
        runs = read_all(lambda limit, offset: client.read_flow_runs(limit=limit, offset=offset))
    assert not [r for r in runs if r.parameters.get("out") == str(out)]
    assert not out.exists() and openai_stub.requests == []


def test_a_bad_project_setting_or_parameter_fails_the_run_before_anything_is_written(
        tmp_path, monkeypatch, openai_env, sample_pickle, prefect_server):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FTPREP_PROJECT", "Team A")
    state = prepare(data=str(sample_pickle), out=str(tmp_path / "out"), return_state=True)
    assert state.is_failed()
    assert f"InputError: FTPREP_PROJECT='Team A' is invalid (value error, {RULE}); set it to a valid value or " \
           "unset it" in state.message and "\n" not in state.message
    # the parameter wins over the setting, and is checked by Prefect before the flow runs (a deployment's form)
    monkeypatch.setenv("FTPREP_PROJECT", new_project())
    state = prepare(data=str(sample_pickle), out=str(tmp_path / "out"), project="team/a", return_state=True)
    assert state.is_failed() and f"project (--project) 'team/a' is not allowed: {RULE}" in state.message
    assert not (tmp_path / "out").exists() and openai_env.requests == []


def test_the_setting_names_the_project_when_the_parameter_is_not_given(tmp_path, monkeypatch, openai_env,
                                                                       sample_pickle, prefect_server):
    monkeypatch.chdir(tmp_path)
    project = new_project()
    monkeypatch.setenv("FTPREP_PROJECT", project)
    try:
        result = prepare(data=str(sample_pickle), out=str(tmp_path / "out"),
                         split=SplitConfig(train_size=20, validation_size=0))
        assert result.project == project
        assert Variable.get(f"ftprep_latest_files__{project}")["train_file_id"] == result.remote_file("train").id
    finally:
        Variable.unset(f"ftprep_latest_files__{project}")
