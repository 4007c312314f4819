"""Outputs are a transaction: SIGKILL a prepare run at every stage, the previous pair and manifest stay intact."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ftprep import outputs
from ftprep.names import FILE_NAMES, MANIFEST
from ftprep.pause import STAGES

FTPREP = str(Path(sys.executable).parent / "ftprep")
NAMES = (*FILE_NAMES.values(), MANIFEST)


def snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in NAMES}


def killed_at(stage: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
    marker = cwd / f"paused-{stage}"
    env = dict(env, FTPREP_TEST_PAUSE=stage, FTPREP_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([FTPREP, *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before stage {stage}: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"stage {stage} was never reached")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_run_killed_at_any_stage_leaves_the_previous_output_intact(tmp_path, cli_env, sample_pickle, openai_env):
    env = dict(cli_env, OPENAI_API_KEY=openai_env.api_key, OPENAI_BASE_URL=openai_env.base_url)
    data = tmp_path / "items.pkl"
    shutil.copy(sample_pickle, data)
    good = subprocess.run([FTPREP, "prepare", "--data", str(data), "--out", "out", "--train-size", "40",
                           "--validation-size", "10"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    out = tmp_path / "out"
    before = snapshot(out)
    uploads_before = len(openai_env.files_for("fine-tune"))

    for i, stage in enumerate(STAGES):
        source = tmp_path / f"copy-{stage}.pkl"  # a new path: the load task is not a cache hit
        shutil.copy(sample_pickle, source)
        killed_at(stage, ["prepare", "--data", str(source), "--out", "out", "--train-size", str(41 + i),
                          "--validation-size", "10"], env, tmp_path)
        assert snapshot(out) == before, f"killed at {stage}: the previous output changed"
        assert all((out / name).is_symlink() for name in NAMES)

    # the next run commits a consistent new pair and removes what the killed runs left
    again = subprocess.run([FTPREP, "prepare", "--data", str(data), "--out", "out", "--train-size", "60",
                            "--validation-size", "10"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    manifest = json.loads((out / MANIFEST).read_text())
    for role in ("train", "validation"):
        data_bytes = (out / FILE_NAMES[role]).read_bytes()
        assert hashlib.sha256(data_bytes).hexdigest() == manifest["files"][role]["sha256"]
    assert manifest["files"]["train"]["examples"] == 60
    state = sorted(os.listdir(out / outputs.STATE))
    assert state == [outputs.CURRENT, os.readlink(out / outputs.STATE / outputs.CURRENT)], state
    # the run killed at upload may have stored its file: the stub holds at most one copy per content
    contents = [f.filename for f in openai_env.files_for("fine-tune")]
    assert len(contents) == len(set(contents)) and len(contents) >= uploads_before
