"""The charts' child process: one per process, shared by its runs, replaced when it has gone."""

from __future__ import annotations

import os
import signal

from tasks.chart_draw import TARGETS, Painter


def test_runs_of_one_process_share_one_painter_and_a_dead_one_is_replaced():
    first = Painter.shared()
    assert Painter.shared() is first and first.alive()
    assert first.draw([], [1.0, 2.0, 2.5], "price")[TARGETS][:8] == b"\x89PNG\r\n\x1a\n"
    os.kill(first._child.pid, signal.SIGKILL)
    first._child.wait(timeout=10)
    assert not first.alive()
    second = Painter.shared()
    assert second is not first and second.alive()
    # a painter whose child died mid-run still draws, in this process
    assert first.draw([], [3.0], "price")[TARGETS][:4] == b"\x89PNG"
