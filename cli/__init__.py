"""The command line: the top of the import graph (it imports flows; nothing imports it)."""

from __future__ import annotations

import os
import sys

_STOPPED = "interrupted: stopped; requests in flight were cancelled"
_STORED = " (a file being uploaded may have been stored: the next run reuses it or removes the duplicate)"
_JOB = ("; a fine-tuning job this run started is cancelled, unless another run follows it or "
        "--no-cancel-job-on-cancel was given")


def interrupted(command: str | None) -> str:
    """The one line a Ctrl-C ends ``command`` with (exit status 130): what may be left behind, for that command."""
    if command == "prepare":
        return _STOPPED + _STORED
    if command == "fine-tune":  # it uploads nothing: it starts a job on files already uploaded
        return _STOPPED + _JOB
    return _STOPPED


def emit(text: str) -> None:
    """Print the command's output on stdout, through the redaction layer. A reader that stops reading (``ftprep
    validate f | head -1``) ends the output there, not the command: the rest goes nowhere, and the exit status
    stays the command's."""
    from ftprep.redact import redact  # here: the console script imports this module before anything else

    try:
        print(redact(text), flush=True)
    except BrokenPipeError:
        stdout_gone()


def stdout_gone() -> None:
    """Point stdout at /dev/null: its reader has gone, and nothing written or flushed later may fail."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
