"""A team's setup, with real parts: a `prefect server start` on PostgreSQL, two process workers as two
"machines" (separate folders and PREFECT_HOMEs, sharing only the server, the S3 store and the OpenAI stub),
moto's S3 server over HTTP holding the data the team setup step uploaded, and the deployments of
prefect.team.yaml, whose pull step clones the code from a git repository (here a ``file://`` bare clone of
this checkout, so runs use its last commit). Servers are started once per module (tests/conftest.py).

Data and outputs live in the bucket: both runs read the deployment's default ``data`` (the ``s3://`` URL the
setup step printed) and each commits its own ``s3://…/out-<machine>`` (the manifest is the commit point).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from tests.prefect_api import client_of
from tests.prefect_procs import ROOT, prefect, process, tail, wait_until, worker

BUCKET = "ftprep-team"
POOL = "ftprep-process"


def load_yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_team_file_has_the_same_deployments_as_prefect_yaml():
    """prefect.team.yaml differs from prefect.yaml only in the pull step and the data/out locations."""
    one, team = load_yaml("prefect.yaml"), load_yaml("prefect.team.yaml")
    (step,) = team["pull"]
    assert step["prefect.deployments.steps.git_clone"]["repository"] == "{{ $FTPREP_REPOSITORY }}"

    def without_locations(deployments):
        return [dict(d, parameters={k: v for k, v in d.get("parameters", {}).items() if k not in ("data", "out")},
                     schedules=d.get("schedules", []))
                for d in deployments]

    assert without_locations(team["deployments"]) == without_locations(one["deployments"])
    for d in team["deployments"]:
        for key in ("data", "out"):
            if key in d.get("parameters", {}):
                assert d["parameters"][key].startswith("s3://{{ $FTPREP_BUCKET }}/"), (d["name"], key)


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> str:
    """A bare clone of this checkout, as a ``file://`` URL: the team's git server."""
    bare = tmp_path_factory.mktemp("git") / "ftprep.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(ROOT), str(bare)], check=True, capture_output=True)
    return bare.as_uri()


def run_state(client, flow_run_id):
    state = client.read_flow_run(flow_run_id).state
    return state if state and state.is_final() else None


def test_two_machines_run_the_team_deployment_on_postgres(tmp_path, team_server, s3_service, repository,
                                                          openai_stub, sample_pickle):
    from prefect.client.schemas.actions import VariableCreate, WorkPoolCreate

    # shared results (README "Run as a team"): the setup step saves the block, the runs on both workers use it
    results = f"s3://{BUCKET}/results"
    env = dict(team_server.env, FTPREP_RESULT_STORAGE=results)
    machines = {m: _mkdir(tmp_path / f"machine-{m}") for m in ("a", "b")}
    worker_env = dict(env, OPENAI_API_KEY=openai_stub.api_key, OPENAI_BASE_URL=openai_stub.base_url,
                      **s3_service.env)
    with client_of(env["PREFECT_API_URL"]) as client, \
            ExitStack() as stack:
        # one queue per machine, so each machine's worker takes exactly one of the two runs
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        for m in machines:
            client.create_work_queue(name=f"machine-{m}", work_pool_name=POOL)
        # The team setup step (the sample into the bucket) and both workers start while deploying: these
        # processes spend their first seconds importing, so overlapping them keeps the test short.
        setup_log = tmp_path / "team_setup.log"
        setup = stack.enter_context(process(
            [sys.executable, "scripts/team_setup.py", "--bucket", BUCKET, "--data", str(sample_pickle)],
            dict(env, **s3_service.env), setup_log))
        workers = {m: stack.enter_context(worker(worker_env, path / "worker.log", queue=f"machine-{m}", cwd=path,
                                                 PREFECT_HOME=str(path / "prefect-home")))
                   for m, path in machines.items()}
        prefect(dict(env, FTPREP_REPOSITORY=repository, FTPREP_BUCKET=BUCKET),
                "--no-prompt", "deploy", "--all", "--prefect-file", "prefect.team.yaml")
        deployment = client.read_deployment_by_name("prepare/prepare-sample")
        assert deployment.pull_steps == [{"prefect.deployments.steps.git_clone": {"id": "clone",
                                                                                   "repository": repository}}]
        sample_url = f"s3://{BUCKET}/sample/items.pkl"
        assert deployment.parameters["data"] == sample_url

        assert setup.wait(timeout=120) == 0, tail(setup_log)
        assert sample_url in setup_log.read_text() and results in setup_log.read_text()
        bucket = s3_service.client()
        stored = bucket.get_object(Bucket=BUCKET, Key="sample/items.pkl")["Body"].read()
        assert hashlib.sha256(stored).digest() == hashlib.sha256(sample_pickle.read_bytes()).digest()

        # As after a team's first run. Two first runs finishing together both try to create it (Prefect's
        # Variable.set reads, then creates), and one fails with ObjectAlreadyExists: a race of the publish
        # task that this test does not cover.
        client.create_variable(VariableCreate(name="ftprep_latest_files", value={}))
        runs = {}
        for m, seed in (("a", 1), ("b", 2)):
            parameters = {"out": f"s3://{BUCKET}/out-{m}",  # data: the deployment's default, sample_url
                          "split": {"train_size": 100, "validation_size": 20, "shuffle": True, "seed": seed}}
            runs[m] = client.create_flow_run_from_deployment(deployment.id, parameters=parameters,
                                                             work_queue_name=f"machine-{m}")

        def both_finished():
            for m, proc in workers.items():
                assert proc.poll() is None, tail(machines[m] / "worker.log")
            return all(run_state(client, run.id) for run in runs.values())

        wait_until(both_finished, 150, "both flow runs", interval=1)
        for m, run in runs.items():
            state, log = run_state(client, run.id), machines[m] / "worker.log"
            assert state.is_completed(), (m, state.message, tail(log))
            assert str(run.id) in log.read_text(), f"machine {m} did not run {run.id}"
            assert "Deployment step 'git_clone' completed successfully" in log.read_text(), tail(log)
            manifest = json.loads(bucket.get_object(Bucket=BUCKET, Key=f"out-{m}/manifest.json")["Body"].read())
            assert manifest["dataset"]["path"] == sample_url, manifest["dataset"]
            train = manifest["files"]["train"]["path"].removeprefix(f"s3://{BUCKET}/")
            assert len(bucket.get_object(Bucket=BUCKET, Key=train)["Body"].read().splitlines()) == 100

    assert len(openai_stub.files_for("fine-tune")) == 4
    # the results and cache records are in the bucket, none in a machine's PREFECT_HOME: each run's own (its
    # result, split, format, write, validate) and one load record: the same dataset, so the same key
    stored = s3_service.client().list_objects_v2(Bucket=BUCKET, Prefix="results/").get("Contents", [])
    assert len(stored) >= 2 * 5 + 1, [o["Key"] for o in stored]
    for path in machines.values():
        assert not any((path / "prefect-home").glob("storage/*"))
    # the runs are rows of the server's PostgreSQL database
    ids = ", ".join(f"'{run.id}'" for run in runs.values())
    assert team_server.sql(f"SELECT state_type FROM flow_run WHERE id IN ({ids})").split() == ["COMPLETED"] * 2


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
