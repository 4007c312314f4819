"""The ``ftprep`` console script: a Ctrl-C from its first moment ends it with one line, then the command runs.

Importing the command's code (cyclopts, pydantic) takes a few tenths of a second before :func:`cli.main.run` sets
its own Ctrl-C handler; a Ctrl-C then would print Python's traceback. Nothing has started by then (no helper
process, no server, no run), so this handler only says so and leaves.
"""

from __future__ import annotations

import os
import signal
import sys

from cli import interrupted


def _before_the_command(signum, frame) -> None:
    try:
        sys.stderr.write(interrupted(sys.argv[1] if len(sys.argv) > 1 else None) + "\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


def run() -> None:
    signal.signal(signal.SIGINT, _before_the_command)
    from cli.main import run as command

    command()
