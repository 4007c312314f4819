"""A test-only pause point: with FTPREP_TEST_PAUSE=<stage>, a run stops there so a test can kill it."""

from __future__ import annotations

import os
import time
from pathlib import Path

STAGES = ("load", "write", "validate", "upload", "commit")


def pause_point(stage: str) -> None:
    """At ``stage``, when FTPREP_TEST_PAUSE names it: touch FTPREP_TEST_PAUSE_FILE and wait to be killed."""
    if os.environ.get("FTPREP_TEST_PAUSE") != stage:
        return
    marker = os.environ.get("FTPREP_TEST_PAUSE_FILE")
    if marker:
        Path(marker).write_text(f"{os.getpid()} {stage}\n")
    while True:
        time.sleep(1)
