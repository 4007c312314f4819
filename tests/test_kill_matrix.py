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
from collections.abc import Callable
from pathlib import Path

from ftprep import outputs
from ftprep.names import FILE_NAMES, MANIFEST
from ftprep.pause import STAGES

FTPREP = str(Path(sys.executable).parent / "ftprep")
NAMES = (*FILE_NAMES.values(), MANIFEST)


def snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in NAMES}


def kill_each_at_its_stage(runs: dict[str, list[str]], env: dict[str, str], cwd: Path,
                           check: Callable[[str], None]) -> None:
    """Start one ``ftprep ARGS`` per stage, all at once (two runs at once are a supported case, and the matrix then
    costs one run's time, not five); SIGKILL each as soon as it reaches its stage, then ``check(stage)``."""
    procs = {}
    for stage, args in runs.items():
        marker = cwd / f"paused-{stage}"
        # every task runs its body, so each run reaches its stage's pause point: cache keys come from content, so a
        # load of the same bytes (at any path) would otherwise be a cache hit of an earlier run and skip it
        run_env = dict(env, FTPREP_TEST_PAUSE=stage, FTPREP_TEST_PAUSE_FILE=str(marker),
                       PREFECT_TASKS_REFRESH_CACHE="true")
        procs[stage] = (marker, subprocess.Popen([FTPREP, *args], env=run_env, cwd=cwd, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.PIPE, start_new_session=True))
    deadline = time.monotonic() + 180
    try:
        while procs:
            for stage, (marker, proc) in list(procs.items()):
                if marker.exists():
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    del procs[stage]
                    check(stage)
                elif proc.poll() is not None:
                    raise AssertionError(f"run ended before stage {stage}: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"never reached: {', '.join(procs)}")
            time.sleep(0.05)
    finally:
        for _, proc in procs.values():
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

    runs = {}
    for i, stage in enumerate(STAGES):
        source = tmp_path / f"copy-{stage}.pkl"  # each run its own file (not a cache miss: see kill_each_at_its_stage)
        shutil.copy(sample_pickle, source)
        runs[stage] = ["prepare", "--data", str(source), "--out", "out", "--train-size", str(41 + i),
                       "--validation-size", "10"]  # new content for each run

    def intact(stage: str) -> None:
        assert snapshot(out) == before, f"killed at {stage}: the previous output changed"
        assert all((out / name).is_symlink() for name in NAMES)

    kill_each_at_its_stage(runs, env, tmp_path, intact)

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
