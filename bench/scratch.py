"""The benchmarks' temporary folders: all inside one folder per benchmark run, removed when the run ends."""

from __future__ import annotations

import atexit
import shutil
import tempfile


def one_folder() -> str:
    """Make every later ``tempfile.mkdtemp()`` of this process land in one new folder, removed at exit. A whole
    benchmark leaves outputs and result stores of about 1.5 GB a 400k run; left in /tmp, weekly runs fill the disk."""
    folder = tempfile.mkdtemp(prefix="ftprep-bench-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    tempfile.tempdir = folder
    return folder
