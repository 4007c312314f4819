"""Object storage wherever a path is accepted: prepare from ``s3://`` data to an ``s3://`` output over real HTTP
(moto's S3 server, ``AWS_ENDPOINT_URL``), the manifest as the commit point, one-line errors, and ``file://``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid

import pytest

from flows.prepare import prepare
from ftprep import outputs, storage
from ftprep.models import PrepareResult, SplitConfig
from tests.test_cli import ftprep_main  # noqa: F401 - the fixture: ``ftprep ARGS`` in this process
from tests.test_flow_prepare import states_by_task


@pytest.fixture
def s3(s3_service, monkeypatch):
    """The session's S3 server in this process's environment (as a user's AWS settings would be), and a bucket
    of this test's own: ``s3.bucket`` is ``s3://<unique name>``."""
    for name, value in s3_service.env.items():
        monkeypatch.setenv(name, value)
    s3_service.bucket = s3_service.make_bucket(f"ftprep-{uuid.uuid4().hex[:12]}")
    return s3_service


def put(s3, url: str, data: bytes) -> str:
    bucket, key = url.removeprefix("s3://").split("/", 1)
    s3.client().put_object(Bucket=bucket, Key=key, Body=data)
    return url


def get(s3, url: str) -> bytes:
    bucket, key = url.removeprefix("s3://").split("/", 1)
    return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def keys(s3, url: str) -> list[str]:
    bucket, prefix = url.removeprefix("s3://").split("/", 1)
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"].removeprefix(prefix).lstrip("/") for p in pages for o in p.get("Contents", ()))


# ------------------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "pkl"])
def test_every_format_reads_from_s3_as_from_disk(s3, tmp_path, fmt):
    import pandas as pd

    from tasks.load import describe, read_records

    rows = [{"question": f"q{i}", "price": float(i)} for i in range(50)]
    local = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        local.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        pd.DataFrame(rows).to_csv(local, index=False)
    elif fmt == "parquet":
        pd.DataFrame(rows).to_parquet(local)
    else:
        import pickle

        local.write_bytes(pickle.dumps(rows))
    url = put(s3, f"{s3.bucket}/in/data.{fmt}", local.read_bytes())
    assert list(read_records(url)) == list(read_records(local)) == rows
    ref, _ = describe(url)
    assert ref.path == url and ref.sha256 == hashlib.sha256(local.read_bytes()).hexdigest()
    assert ref.size_bytes == local.stat().st_size and ref.records == 50


def test_a_jsonl_url_is_read_in_ranges_and_copied_to_disk_only_for_shuffled_access(s3):
    import gc
    import random

    from ftprep.records import take
    from tasks.load import read_records

    rows = [{"question": f"q{i}", "price": float(i)} for i in range(3_000)]
    url = put(s3, f"{s3.bucket}/in/data.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    records = read_records(url)
    batch = take(records, range(1_000, 3_000))  # an unshuffled split's chunk: one range read
    assert [batch[i] for i in range(1_000, 3_000)] == rows[1_000:] and records._file.path == url
    order = random.Random(4).sample(range(3_000), 500)
    batch = take(records, order)
    assert [batch[i] for i in order] == [rows[i] for i in order]
    copy = records._file.path
    assert copy != url and open(copy, "rb").read().count(b"\n") == 3_000
    del records, batch
    gc.collect()
    with pytest.raises(FileNotFoundError):
        open(copy, "rb")


def test_the_copy_of_a_killed_run_is_removed_by_the_next_one_and_a_running_ones_is_not(s3, tmp_path):
    """A shuffled split of a JSONL URL copies it to a temporary file; a run killed with SIGKILL cannot remove its
    copy, so the next copy removes every copy no living process holds (they hold a lock on theirs)."""
    import os
    import random
    import signal
    import sys
    import time

    from ftprep.records import take
    from tasks.load import read_records

    rows = [{"question": f"q{i}", "price": float(i)} for i in range(500)]
    url = put(s3, f"{s3.bucket}/in/data.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    holder = ("import random, sys, time\n"
              "from ftprep.records import take\n"
              "from tasks.load import read_records\n"
              f"records = read_records({url!r})\n"
              "take(records, random.Random(1).sample(range(500), 50))\n"
              "print(records._file.path, flush=True)\n"
              "time.sleep(120)\n")
    procs = [subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        killed, running = (p.stdout.readline().strip() for p in procs)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=30)
        past = time.time() - 600  # older than a copy still being made
        for copy in (killed, running):
            assert os.path.exists(copy)
            os.utime(copy, (past, past))
        records = read_records(url)
        take(records, random.Random(2).sample(range(500), 50))  # this run's copy: first the orphans go
        assert not os.path.exists(killed) and os.path.exists(running)
        assert os.path.exists(records._file.path)
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)


@pytest.mark.parametrize("size", [1000, 9 << 20])  # within one block, and past it (a multipart upload begun)
def test_a_write_that_fails_leaves_no_object(s3, size):
    target = f"{s3.bucket}/out/file.jsonl"
    with pytest.raises(RuntimeError), storage.open_write(target) as f:
        f.write(b"x" * size)
        raise RuntimeError("the writer failed")
    import gc

    gc.collect()  # the abandoned file object is not completed by its finalizer either
    assert keys(s3, f"{s3.bucket}/out") == []
    with storage.open_write(target) as f:
        f.write(b"whole\n")
    assert get(s3, target) == b"whole\n"


# ------------------------------------------------------------------------------------------- the flow
@pytest.mark.usefixtures("prefect_server")
def test_prepare_from_s3_to_s3_commits_the_manifest_and_a_second_run_is_cached(s3, openai_env, sample_pickle):
    data = put(s3, f"{s3.bucket}/datasets/items.pkl", sample_pickle.read_bytes())
    out = f"{s3.bucket}/runs/out"
    state = prepare(data=data, out=out, split=SplitConfig(train_size=200, validation_size=40), return_state=True)
    assert state.is_completed(), state.message
    result: PrepareResult = state.result()
    assert result.dataset.path == data and result.files.out_dir == out

    # The manifest is the commit point: it names the generation's files, which hold exactly what was uploaded.
    manifest = PrepareResult.model_validate_json(get(s3, f"{out}/manifest.json"))
    assert manifest == result
    generation = storage.parent(manifest.files.train.path)
    assert generation.startswith(f"{out}/.ftprep/gen-") and storage.parent(manifest.files.validation.path) == generation
    stored = {f.id: f for f in openai_env.files_for("fine-tune")}
    for remote in result.uploaded:
        written = getattr(manifest.files, remote.role)
        body = get(s3, written.path)
        assert hashlib.sha256(body).hexdigest() == written.sha256 == remote.sha256
        assert stored[remote.id].read_bytes() == body and len(body) == written.bytes
    assert result.files.train.examples == 200 and result.files.validation.examples == 40
    # nothing else: no stage left, no fixed-name files (only the manifest says which files are current); the
    # run's claim on its generation (.in-use) keeps other machines' clean-up away from it
    gen = generation.removeprefix(f"{out}/")
    assert keys(s3, out) == sorted(["manifest.json", *(f"{gen}/{n}" for n in (
        ".in-use", "fine_tune_train.jsonl", "fine_tune_validation.jsonl", "manifest.json", "targets.png",
        "tokens.png"))])
    assert get(s3, f"{generation}/manifest.json") == get(s3, f"{out}/manifest.json")

    # The identical run: cached by content (not by where the data lives), nothing sent again.
    openai_env.reset_records()
    state2 = prepare(data=data, out=out, split=SplitConfig(train_size=200, validation_size=40), return_state=True)
    assert state2.is_completed(), state2.message
    states = states_by_task(state2.state_details.flow_run_id)
    for name in ("load", "split", "format", "write", "validate"):
        assert states[name] == ["Cached"], (name, states)
    assert openai_env.count("POST", "/v1/files", exact=True) == 0
    assert all(f.reused for f in state2.result().uploaded)


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("failure", ["validation error", "upload refused"])
def test_a_failed_run_leaves_the_previous_manifest_and_its_files_untouched(s3, openai_env, tmp_path, failure):
    template = tmp_path / "qa.toml"
    template.write_text('user = "{question}"\nassistant = "{answer}"\n')
    good = "".join(json.dumps({"question": f"q{i}", "answer": f"a{i}"}) + "\n" for i in range(40))
    data = put(s3, f"{s3.bucket}/datasets/qa.jsonl", good.encode())
    out = f"{s3.bucket}/out"
    first = prepare(data=data, template=str(template), out=out, split=SplitConfig(train_size=20, validation_size=10))
    before = get(s3, f"{out}/manifest.json")
    named = {f.path: get(s3, f.path) for f in first.files.files()}

    if failure == "validation error":
        bad = "".join(json.dumps({"question": f"q{i}", "answer": "" if i % 2 else f"a{i}"}) + "\n" for i in range(40))
        data = put(s3, f"{s3.bucket}/datasets/qa-bad.jsonl", bad.encode())
        split = SplitConfig(train_size=20, validation_size=10)
    else:  # new content (another split) whose upload the stub refuses
        openai_env.inject("POST", "/v1/files", "status", times=None, status=400, message="refused by the test")
        split = SplitConfig(train_size=25, validation_size=10)
    state = prepare(data=data, template=str(template), out=out, split=split, return_state=True)
    assert state.is_failed()
    states = states_by_task(state.state_details.flow_run_id)
    assert states["validate"] == (["Failed"] if failure == "validation error" else ["Completed"])
    assert "publish" not in states

    assert get(s3, f"{out}/manifest.json") == before  # byte-identical: the commit point did not move
    assert {path: get(s3, path) for path in named} == named
    # the failed run's generation exists beside the committed one, unreferenced, for a later clean-up
    generations = {k.split("/")[1] for k in keys(s3, out) if k.startswith(".ftprep/gen-")}
    assert len(generations) == 2 and not any(k.startswith(".ftprep/tmp-") for k in keys(s3, out))


@pytest.mark.usefixtures("prefect_server")
def test_clean_up_keeps_the_manifests_generation_and_recent_ones(s3, sample_pickle):
    data = put(s3, f"{s3.bucket}/items.pkl", sample_pickle.read_bytes())
    out = f"{s3.bucket}/out"
    old = prepare(data=data, out=out, upload=False, split=SplitConfig(train_size=60, validation_size=20))
    new = prepare(data=data, out=out, upload=False, split=SplitConfig(train_size=70, validation_size=20))
    old_gen, new_gen = storage.parent(old.files.train.path), storage.parent(new.files.train.path)
    assert old_gen != new_gen and outputs.current(out) == new_gen
    stage = put(s3, f"{out}/.ftprep/tmp-killedrun/fine_tune_train.jsonl", b"half")  # a run killed mid-write
    assert outputs.clean(out) == []  # by default: nothing young is touched (another machine may be using it)
    assert sorted(outputs.clean(out, older_than=0)) == sorted([storage.name(old_gen), "tmp-killedrun"])
    assert storage.exists(new.files.train.path) and not storage.exists(old.files.train.path)
    assert not storage.exists(stage)


def test_a_run_killed_at_any_stage_leaves_the_previous_manifest_and_files(s3, tmp_path, cli_env, sample_pickle,
                                                                          openai_env):
    from ftprep.pause import STAGES
    from tests.test_kill_matrix import FTPREP, kill_each_at_its_stage

    env = dict(cli_env, OPENAI_API_KEY=openai_env.api_key, OPENAI_BASE_URL=openai_env.base_url, **s3.env)
    data = put(s3, f"{s3.bucket}/items.pkl", sample_pickle.read_bytes())
    out = f"{s3.bucket}/out"
    args = ["prepare", "--data", data, "--out", out, "--validation-size", "10"]
    good = subprocess.run([FTPREP, *args, "--train-size", "40"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert good.returncode == 0, good.stderr

    def snapshot() -> dict[str, bytes]:
        manifest = get(s3, f"{out}/manifest.json")
        files = json.loads(manifest)["files"]
        return {"manifest": manifest, **{role: get(s3, files[role]["path"]) for role in ("train", "validation")}}

    before = snapshot()
    runs = {stage: ["prepare", "--data", put(s3, f"{s3.bucket}/copy-{stage}.pkl", sample_pickle.read_bytes()),
                    "--out", out, "--validation-size", "10", "--train-size", str(41 + i)]  # new output content
            for i, stage in enumerate(STAGES)}

    def intact(stage: str) -> None:
        assert snapshot() == before, f"killed at {stage}: the committed output changed"

    kill_each_at_its_stage(runs, env, tmp_path, intact)
    again = subprocess.run([FTPREP, *args, "--train-size", "60"], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    manifest = json.loads(get(s3, f"{out}/manifest.json"))
    assert manifest["files"]["train"]["examples"] == 60
    for role in ("train", "validation"):
        assert hashlib.sha256(get(s3, manifest["files"][role]["path"])).hexdigest() == manifest["files"][role]["sha256"]


# ------------------------------------------------------------------------------------------- errors
BAD_URLS = [
    # (args, environment changes, the one line)
    (["--data", "{bucket}/nope.pkl"], {}, "{bucket}/nope.pkl does not exist; check the URL given to --data"),
    (["--data", "s3://no-such-bucket-ftprep/items.pkl"], {},
     "given to --data: bucket does not exist; check the URL given to --data"),
    (["--data", "{bucket}/items.pkl"], {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None},
     "no credentials for s3://; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    (["--data", "{bucket}/items.pkl"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"},
     "cannot reach the endpoint http://127.0.0.1:9 (AWS_ENDPOINT_URL)"),
    (["--data", "{bucket}/items.pkl", "--out", "s3://no-such-bucket-ftprep/out"], {},
     "given to --out: bucket no-such-bucket-ftprep does not exist; create it or check the URL"),
    (["--data", "gs://bucket/items.pkl"], {}, "gs:// needs a package that is not installed; pip install gcsfs"),
    (["--data", "{bucket}/items.txt"], {}, "unknown file type '.txt'"),
]


@pytest.mark.parametrize("args, env, message", BAD_URLS, ids=[m[:40] for _, _, m in BAD_URLS])
def test_bad_urls_are_one_clear_line(s3, tmp_path, ftprep_main, openai_stub, sample_pickle,  # noqa: F811
                                     monkeypatch, args, env, message):
    pytest.importorskip("s3fs")
    if "gs://" in " ".join(args):
        try:
            import gcsfs  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("gcsfs is installed here")
    put(s3, f"{s3.bucket}/items.pkl", sample_pickle.read_bytes())
    put(s3, f"{s3.bucket}/items.txt", b"text")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))  # no developer's ~/.aws here
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    argv = [a.format(bucket=s3.bucket) for a in args]
    proc = ftprep_main(["prepare", *argv], {"OPENAI_API_KEY": openai_stub.api_key,
                                            "OPENAI_BASE_URL": openai_stub.base_url})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message.format(bucket=s3.bucket) in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert openai_stub.count("POST") == 0


# -------------------------------------------------------------------------------------------- file://
@pytest.mark.usefixtures("prefect_server")
def test_file_urls_are_local_paths(tmp_path, monkeypatch, sample_pickle):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = prepare(data=sample_pickle.as_uri(), out=out.as_uri(), upload=False,
                     split=SplitConfig(train_size=50, validation_size=10))
    assert result.dataset.path == str(sample_pickle) and result.files.out_dir == str(out)
    # today's local layout exactly: fixed links through the one pointer, the manifest beside the files
    assert (out / "fine_tune_train.jsonl").is_symlink() and (out / ".ftprep" / "current").is_symlink()
    assert PrepareResult.model_validate_json((out / "manifest.json").read_text()) == result
    assert hashlib.sha256((out / "fine_tune_train.jsonl").read_bytes()).hexdigest() == result.files.train.sha256
