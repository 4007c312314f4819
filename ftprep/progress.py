"""Progress bars for long work on a terminal (rich); silent when output is not a terminal (logs, workers, CI)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Update = Callable[[int], None]


def on_terminal() -> bool:
    """Bars only for a person at a terminal: stderr is a TTY and FTPREP_PROGRESS is not 0."""
    return os.environ.get("FTPREP_PROGRESS", "1") != "0" and sys.stderr.isatty()


@contextmanager
def bar(description: str, total: int) -> Iterator[Update]:
    """``with bar("writing", n) as update: ... update(done)``; a no-op away from a terminal."""
    if not on_terminal() or total <= 0:
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    lock = threading.Lock()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total)

        def update(done: int) -> None:
            with lock:
                progress.update(task, completed=min(done, total))

        yield update
