"""Ctrl-C in a terminal: one line, out within seconds, even with a request in flight; a second Ctrl-C adds nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

FTPREP = str(Path(sys.executable).parent / "ftprep")


def test_ctrl_c_during_a_slow_upload_stops_within_seconds_with_one_line(tmp_path, cli_env, sample_pickle,
                                                                        openai_stub):
    openai_stub.inject("POST", "/v1/files", "delay", seconds=120)  # the server hangs on the upload
    env = dict(cli_env, OPENAI_API_KEY=openai_stub.api_key, OPENAI_BASE_URL=openai_stub.base_url)
    proc = subprocess.Popen([FTPREP, "prepare", "--data", str(sample_pickle), "--out", "out", "--train-size", "25",
                             "--validation-size", "10"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not [r for r in openai_stub.requests if r.method == "POST" and r.path == "/v1/files"]:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.05)
    time.sleep(0.5)
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - interrupted
    assert proc.returncode == 130
    assert took < 5, f"took {took:.1f} s to stop"
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and lines[0].startswith("interrupted: stopped; requests in flight were cancelled")
    assert "Traceback" not in err + out
    assert not (tmp_path / "out" / "manifest.json").exists()  # nothing was committed
