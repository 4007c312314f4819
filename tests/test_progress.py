"""Progress bars show on a terminal and nowhere else."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

FTPREP = str(Path(sys.executable).parent / "ftprep")


def run_on_terminal(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run the command with a pseudo-terminal as its stderr (as a person's shell would); return what it showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        shown += chunk
    proc.wait(timeout=180)
    os.close(leader)
    return shown.decode(errors="replace")


def test_a_bar_on_a_terminal_and_none_in_a_pipe(tmp_path, cli_env, sample_pickle):
    args = [FTPREP, "prepare", "--data", str(sample_pickle), "--out", "out", "--no-upload", "--train-size", "400"]
    shown = run_on_terminal(args, cli_env, tmp_path)
    assert "writing examples" in shown and "━" in shown  # rich's bar
    piped = subprocess.run([*args[:-1], "401"], env=cli_env, cwd=tmp_path, capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr
    assert "━" not in piped.stderr + piped.stdout and "writing examples" not in piped.stderr
