"""The temporary Prefect server of a run with no PREFECT_API_URL: no secret in it, no orphan, safe first runs (and
the same of the charts' child process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ftprep.server import child_environment

FTPREP = str(Path(sys.executable).parent / "ftprep")


def own_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment with no Prefect server configured: a fresh PREFECT_HOME, a key in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "OPENAI_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), OPENAI_API_KEY="sk-test-never-in-a-child-0123456789")
    return env


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_child_environment_holds_no_credentials(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_secret")
    env = child_environment()
    assert not {"OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "PREFECT_API_KEY"} & set(env)
    assert env["PREFECT_UI_ENABLED"] == "0" and "PATH" in env


def test_the_server_gets_no_secret_and_dies_with_a_killed_run(tmp_path, sample_pickle):
    env = own_env(tmp_path)
    marker = tmp_path / "paused"
    env.update(FTPREP_TEST_PAUSE="validate", FTPREP_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([FTPREP, "prepare", "--data", str(sample_pickle), "--out", "out", "--no-upload"],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 150
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the run never reached validation"
        time.sleep(0.1)
    servers = [pid for pid in children(proc.pid) if b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    painters = [pid for pid in children(proc.pid) if b"chart_draw" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(servers) == 1 and len(painters) == 1  # the charts' child process is running too
    for pid in servers + painters:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"OPENAI_API_KEY" not in environ and b"sk-test-never" not in environ
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in servers + painters) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(servers[0]), "the temporary server outlived its killed parent"
    assert not alive(painters[0]), "the charts' process outlived its killed parent"


def test_two_first_runs_on_a_fresh_prefect_home_both_succeed(tmp_path, sample_pickle):
    env = own_env(tmp_path)
    runs = [subprocess.Popen([FTPREP, "prepare", "--data", str(sample_pickle), "--out", f"out{i}", "--no-upload",
                              "--train-size", str(20 + i), "--validation-size", "10"],
                             env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err.decode()[-3000:]
        assert b"validation: valid" in out
