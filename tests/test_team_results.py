"""Two machines share results: FTPREP_RESULT_STORAGE on moto's S3 server, one Prefect server on PostgreSQL.

Machines A and B are two clones of this checkout's last commit (commit before running this) in separate folders,
with separate PREFECT_HOMEs; they share only the Prefect server, the S3 store and the OpenAI stub. Each runs the
``ftprep`` command of its own clone (``python -m cli.main`` in the clone), as a person on that machine would.

Data and outputs are in the bucket too: each machine reads its own copy of the same dataset at a different URL
(so the cache hits below also prove that cache keys do not depend on where a dataset was read from), and both
write to one ``--out`` URL: the output location is part of what a run is asked to do, so a cached write needs the
same ``--out``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ftprep.models import PrepareResult
from ftprep.names import OPENAI_CONCURRENCY_LIMIT
from tests.prefect_api import client_of, run_task_runs, settle
from tests.prefect_procs import ROOT

CACHED_TASKS = ("load", "split", "format", "write", "validate")


@pytest.fixture(scope="module")
def clones(tmp_path_factory) -> dict[str, Path]:
    """Machines A and B: each a folder holding a clone of this checkout's HEAD (``ftprep/``) and its own files."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    machines = {}
    for m in ("a", "b"):
        machine = tmp_path_factory.mktemp(f"machine-{m}")
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(machine / "ftprep")], check=True,
                       capture_output=True)
        cloned = subprocess.run(["git", "-C", str(machine / "ftprep"), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        assert cloned == head
        machines[m] = machine
    return machines


def machine_env(machine: Path, team_server, s3_service, openai_stub, results: str, **extra: str) -> dict[str, str]:
    """What a person on ``machine`` has set: the team's server, S3 and OpenAI settings, and its own PREFECT_HOME."""
    return dict(team_server.env, **s3_service.env, PREFECT_HOME=str(machine / "prefect-home"),
                PYTHONPATH=str(machine / "ftprep"), PWD=str(machine / "ftprep"), OPENAI_API_KEY=openai_stub.api_key,
                OPENAI_BASE_URL=openai_stub.base_url, FTPREP_RESULT_STORAGE=results, **extra)


def ftprep(machine: Path, env: dict[str, str], *args: str, background: bool = False):
    """``ftprep ARGS`` from the clone on ``machine``: finished (CompletedProcess), or running (Popen)."""
    command = [sys.executable, "-m", "cli.main", *args]
    if background:
        return subprocess.Popen(command, cwd=machine / "ftprep", env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=machine / "ftprep", env=env, capture_output=True, text=True, timeout=300)


def data_of(machine: Path, source: Path, s3_service, bucket: str) -> str:
    """The machine's own copy of the dataset, at a URL no other machine uses."""
    key = f"data-{machine.name}/items.pkl"
    s3_service.client().upload_file(str(source), bucket, key)
    return f"s3://{bucket}/{key}"


def prepare_runs(client, data: str) -> list:
    """The prepare flow runs that read ``data`` (the path is the machine's own, so it tells the machines apart)."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["prepare"])))
    return [r for r in runs if r.parameters.get("data") == data]


def test_cache_keys_come_from_content_not_from_where_the_dataset_was_read(tmp_path, sample_pickle):
    """The keys of load, split, format, write and validate: equal for the same bytes read from two paths (as on two
    machines), different for other bytes; the output folder stays part of write's key (it is what a run writes)."""
    from ftprep.models import DatasetRef, SplitConfig, SplitPlan, WrittenFile, WrittenFiles
    from tasks.format import format_examples, resolve_template
    from tasks.load import load_dataset
    from tasks.split import plan_split, split_dataset
    from tasks.validate import validate_written
    from tasks.write import write_files

    def key(task, **inputs) -> str:
        return task.cache_policy.compute_key(None, inputs, {})

    copies = [tmp_path / "a" / "items.pkl", tmp_path / "b" / "data.pkl"]
    for copy in copies:
        copy.parent.mkdir()
        shutil.copyfile(sample_pickle, copy)
    other = tmp_path / "other.pkl"
    other.write_bytes(sample_pickle.read_bytes() + b"\n")
    assert key(load_dataset, path=str(copies[0]), store=1) == key(load_dataset, path=str(copies[1]), store=2)
    assert key(load_dataset, path=str(copies[0]), store=1) != key(load_dataset, path=str(other), store=1)

    refs = [DatasetRef(path=str(c), sha256="ab" * 32, format="pickle", size_bytes=1, records=600, fields=("price",))
            for c in copies]
    plans: list[SplitPlan] = [plan_split(ref, SplitConfig(train_size=100, validation_size=20)) for ref in refs]
    template = resolve_template("course")
    fmt = None
    for task, inputs in ((split_dataset, lambda i: {"data": refs[i], "config": SplitConfig(), "validation_data": None}),
                         (format_examples, lambda i: {"template": template, "plan": plans[i]}),
                         (write_files, lambda i: {"plan": plans[i], "fmt": fmt, "out_dir": "/shared/out"})):
        assert key(task, **inputs(0), store=1) == key(task, **inputs(1), store=2), task.name
    moved = refs[0].model_copy(update={"sha256": "cd" * 32})
    assert key(split_dataset, data=moved, config=SplitConfig(), validation_data=None, store=1) != \
        key(split_dataset, data=refs[0], config=SplitConfig(), validation_data=None, store=1)
    assert key(write_files, plan=plans[0], fmt=fmt, out_dir="/a/out", store=1) != \
        key(write_files, plan=plans[0], fmt=fmt, out_dir="/b/out", store=1)
    files = WrittenFiles(train=WrittenFile(role="train", path="/shared/out/t.jsonl", sha256="ef" * 32, bytes=9,
                                           examples=100, mtime_ns=1), validation=None, out_dir="/shared/out")
    assert key(validate_written, files=files, model="gpt-4o-mini-2024-07-18", price_per_1m=3.0, exact_tokens=False)


@pytest.mark.usefixtures("prefect_server")
def test_a_cached_reference_reads_this_runs_own_copy_of_the_dataset(tmp_path, monkeypatch, sample_pickle):
    """The split cached by a run that read the dataset elsewhere (now gone) names that path; a write into another
    folder reads the records from this run's copy, and the result names it."""
    from flows.prepare import prepare
    from tests.test_flow_prepare import states_by_task

    monkeypatch.chdir(tmp_path)
    elsewhere, here = tmp_path / "elsewhere" / "items.pkl", tmp_path / "here" / "items.pkl"
    for copy in (elsewhere, here):
        copy.parent.mkdir()
        shutil.copyfile(sample_pickle, copy)
    prepare(data=str(elsewhere), out=str(tmp_path / "out-1"), upload=False)
    elsewhere.unlink()
    state = prepare(data=str(here), out=str(tmp_path / "out-2"), upload=False, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result.dataset.path == str(here) and result.files.train.examples == 500
    states = states_by_task(state.state_details.flow_run_id)
    assert states["split"] == ["Cached"] and states["write"] == ["Completed"], states


def test_two_machines_share_cache_hits_results_and_the_openai_limit(tmp_path, clones, team_server, s3_service,
                                                                    openai_stub, sample_pickle, monkeypatch):

    bucket = f"ftprep-results-{uuid.uuid4().hex[:8]}"
    results = s3_service.make_bucket(bucket) + "/prefect"
    shared_out = f"s3://{bucket}/out"
    env = {m: machine_env(path, team_server, s3_service, openai_stub, results) for m, path in clones.items()}
    data = {m: data_of(path, sample_pickle, s3_service, bucket) for m, path in clones.items()}
    prepare = ["prepare", "--out", shared_out, "--train-size", "100", "--validation-size", "20", "--json"]

    # Machine A prepares and uploads; its results and cache records are in the bucket, not in its PREFECT_HOME.
    done = ftprep(clones["a"], env["a"], *prepare, "--data", data["a"])
    assert done.returncode == 0, done.stderr[-3000:]
    first = PrepareResult.model_validate_json(done.stdout)
    assert [f.reused for f in first.uploaded] == [False, False]
    stored = s3_service.client().list_objects_v2(Bucket=bucket, Prefix="prefect/").get("Contents", [])
    assert len(stored) >= 1 + len(CACHED_TASKS), [o["Key"] for o in stored]  # the flow's result and each task's
    local = clones["a"] / "prefect-home" / "storage"
    assert not local.exists() or not any(local.iterdir())

    # Machine B, the same run on its own copy of the data: every step up to validate is a cache hit of A's run,
    # the upload finds A's files at OpenAI, and nothing is sent.
    openai_stub.reset_records()
    done = ftprep(clones["b"], env["b"], *prepare, "--data", data["b"])
    assert done.returncode == 0, done.stderr[-3000:]
    second = PrepareResult.model_validate_json(done.stdout)
    assert [(f.id, f.reused) for f in second.uploaded] == [(f.id, True) for f in first.uploaded]
    assert second.dataset.path == data["b"]
    assert second.files == first.files  # the same files: not written again
    assert openai_stub.count("POST") == 0, [(r.method, r.path) for r in openai_stub.requests]

    with client_of(team_server.env["PREFECT_API_URL"]) as client:
        (run_a,), (run_b,) = prepare_runs(client, data["a"]), prepare_runs(client, data["b"])
        settle(client, [run_b.id])
        states: dict[str, set[str]] = {}
        for task_run in run_task_runs(client, run_b.id):
            states.setdefault(task_run.name.rsplit("-", 1)[0], set()).add(task_run.state.name)
        for name in CACHED_TASKS:
            assert states.get(name) == {"Cached"}, (name, states)

        # A's persisted flow result, read back through the API from here (another PREFECT_HOME): it names the
        # shared block, so any machine with the store's credentials reads it.
        for key, value in s3_service.env.items():
            monkeypatch.setenv(key, value)
        assert PrepareResult.model_validate(client.read_flow_run(run_a.id).state.result()) == first

    # Machine B fine-tunes on the latest prepared files: A's.
    done = ftprep(clones["b"], env["b"], "fine-tune", "--poll-seconds", "0.05", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded"
    assert openai_stub.job(job["job_id"]).training_file == first.remote_file("train").id

    # Four evaluations at once, two on each machine, each asking 8 at a time, under one shared limit of 2
    # OpenAI requests in flight: the stub never holds more than 2 (every answer takes 0.25 s, so they queue).
    openai_stub.reset_records()
    openai_stub.inject("POST", "/v1/chat/completions", "delay", times=None, seconds=0.25)
    limited = {m: dict(e, FTPREP_OPENAI_CONCURRENCY="2") for m, e in env.items()}
    procs = [ftprep(clones[m], limited[m], "evaluate", "--data", data[m], "--out", str(clones[m] / f"eval-{i}"),
                    "--n", "3", "--sample-seed", str(i), "--concurrency", "8", "--json", background=True)
             for i, m in enumerate(("a", "b", "a", "b"))]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    asked = openai_stub.chat_count()
    assert asked >= 20, asked  # 4 runs x 2 models x 3 items, less the few items two seeds share
    assert openai_stub.max_in_flight() == 2
    with client_of(team_server.env["PREFECT_API_URL"]) as client:
        limit = client.read_global_concurrency_limit_by_name(OPENAI_CONCURRENCY_LIMIT)
        assert limit.limit == 2 and limit.active_slots == 0
