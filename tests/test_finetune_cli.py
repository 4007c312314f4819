"""``ftprep fine-tune`` in a terminal: two runs started together make one job; Ctrl-C says what became of the job."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.prefect_procs import wait_until

FTPREP = str(Path(sys.executable).parent / "ftprep")
TRAIN = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "$1.00"}]}\n' * 12


@pytest.fixture
def env(cli_env, openai_stub) -> dict[str, str]:
    return dict(cli_env, OPENAI_API_KEY=openai_stub.api_key, OPENAI_BASE_URL=openai_stub.base_url)


def start(args: list[str], env: dict[str, str], cwd: Path, name: str) -> tuple[subprocess.Popen, Path, Path]:
    out, err = cwd / f"{name}.out", cwd / f"{name}.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([FTPREP, "fine-tune", *args], env=env, cwd=cwd, stdout=o, stderr=e,
                                start_new_session=True)
    return proc, out, err


def finish(proc: subprocess.Popen, timeout: float = 180) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def test_two_runs_started_together_leave_one_job(tmp_path, env, openai_stub):
    training = openai_stub.seed_file("train.jsonl", TRAIN)
    # Each creation is held until both runs' have arrived (at most 30 s): both runs looked before either job
    # existed, and both create one, however far apart a loaded machine starts them.
    openai_stub.inject("POST", "/v1/fine_tuning/jobs", "delay", times=2, together=2, seconds=30)
    args = ["--training-file", training.id, "--suffix", "race", "--poll-seconds", "0.2"]
    runs = [start(args, env, tmp_path, f"run{i}") for i in range(2)]
    codes = [finish(proc) for proc, _, _ in runs]
    outs = [out.read_text() for _, out, _ in runs]
    assert codes == [0, 0], [err.read_text()[-2000:] for _, _, err in runs]

    jobs = openai_stub.jobs
    assert len(jobs) == 2, "the race was not reproduced: both runs should have created a job"
    older, newer = jobs
    assert older["status"] == "succeeded" and newer["status"] == "cancelled"  # one paid job left
    assert all(f"job {older['id']}: succeeded" in out for out in outs), outs
    assert openai_stub.count("POST", f"/v1/fine_tuning/jobs/{newer['id']}/cancel", exact=True) == 1


def interrupt_while_following(tmp_path, env, openai_stub, extra: list[str], name: str):
    training = openai_stub.seed_file(f"{name}.jsonl", TRAIN)
    openai_stub.job_script = ("validating_files", "queued", "running")  # runs until cancelled
    proc, out, err = start(["--training-file", training.id, "--suffix", name, "--poll-seconds", "0.2", *extra],
                           env, tmp_path, name)
    wait_until(lambda: proc.poll() is not None or any(
        j["status"] == "running" and j["training_file"] == training.id for j in openai_stub.jobs), 120, "the job")
    assert proc.poll() is None, err.read_text()[-2000:]
    (job,) = [j for j in openai_stub.jobs if j["training_file"] == training.id]
    os.kill(proc.pid, signal.SIGINT)
    code = finish(proc, 60)
    text = err.read_text()
    assert "Traceback" not in text, text[-3000:]
    lines = [line for line in text.splitlines() if "interrupted (Ctrl-C)" in line]
    return code, lines, job["id"], training


def test_ctrl_c_while_following_cancels_the_job_and_says_so(tmp_path, env, openai_stub):
    code, lines, job_id, _ = interrupt_while_following(tmp_path, env, openai_stub, [], "ctrlc")
    assert code == 130
    assert lines[-1] == f"error: interrupted (Ctrl-C): cancelled fine-tuning job {job_id} (now cancelled)"
    assert openai_stub.job(job_id)["status"] == "cancelled"


def test_ctrl_c_with_no_cancel_leaves_the_job_and_a_rerun_follows_it(tmp_path, env, openai_stub):
    code, lines, job_id, training = interrupt_while_following(
        tmp_path, env, openai_stub, ["--no-cancel-job-on-cancel"], "keep")
    assert code == 130
    assert re.fullmatch(rf"error: interrupted \(Ctrl-C\): fine-tuning job {job_id} keeps running "
                        r"\(cancel_job_on_cancel is off\); run ftprep fine-tune again with the same files and "
                        r"settings to follow it \(it finds the job\)", lines[-1]), lines
    assert openai_stub.job(job_id)["status"] == "running"
    assert openai_stub.count("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel", exact=True) == 0

    openai_stub.continue_job(job_id, "succeeded")
    again = subprocess.run([FTPREP, "fine-tune", "--training-file", training.id, "--suffix", "keep",
                            "--poll-seconds", "0.2"], env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=180)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"job {job_id}: succeeded" in again.stdout and "(existing job reused)" in again.stdout
    assert openai_stub.count("POST", "/v1/fine_tuning/jobs", exact=True) == 1
