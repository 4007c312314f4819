"""The charts' child process: one per process, shared by its runs, replaced when it has gone."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

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


def test_a_painter_that_does_not_answer_is_given_up_and_replaced():
    painter = Painter.shared()
    assert painter.draw([], [1.0], "price")[TARGETS][:4] == b"\x89PNG"
    child = painter._child
    # a process holding the child's pipes (as fc-list, which matplotlib runs, would): they stay open after the kill
    holder = subprocess.Popen(["sh", "-c", f"exec sleep 30 < /proc/{child.pid}/fd/0 3>/proc/{child.pid}/fd/1"])
    time.sleep(0.3)
    os.kill(child.pid, signal.SIGSTOP)  # hung: alive, but never answers
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="did not answer within 1 s"):
        painter.draw([], [1.0, 2.0] * 50_000, "price", timeout=1.0)  # more than a pipe holds: the write blocks too
    assert time.monotonic() - started < 5
    holder.kill()
    holder.wait()
    assert child.wait(timeout=10) == -signal.SIGKILL and not painter.alive()
    with pytest.raises(TimeoutError):  # nor does it draw in this process: what held the child may hold it too
        painter.draw([], [1.0], "price")
    fresh = Painter.shared()
    assert fresh is not painter and fresh.draw([], [3.0], "price")[TARGETS][:4] == b"\x89PNG"


def test_the_command_starts_the_chart_process_early_only_for_small_datasets(tmp_path, monkeypatch):
    """Until its flow starts, ``ftprep prepare`` keeps both cores busy; a large dataset is then read on one core, so
    its chart process starts beside that read (from the flow) instead of beside the command's imports."""
    from cli import main as cli
    from tasks import chart_draw, scan_child

    small, big = tmp_path / "small.pkl", tmp_path / "big.pkl"
    small.write_bytes(b"x" * 1000)
    big.write_bytes(b"x" * 5000)
    mid = tmp_path / "mid.pkl"
    mid.write_bytes(b"x" * 3000)
    monkeypatch.setattr(cli, "EARLY_CHARTS_MAX_BYTES", 4000)
    started = []
    try:
        for argv, early in ((["prepare", "--data", str(small)], True),
                            (["prepare", f"--data={big}"], False),
                            (["prepare", "--data", str(small), "--validation-data", str(small)], True),
                            (["prepare", "--data", str(small), f"--validation-data={big}"], False),
                            (["prepare", "--data", str(tmp_path / "." / "mid.pkl"), "--validation-data", str(mid)],
                             True),  # one file given twice is read once: 3000 bytes, not 6000
                            (["prepare", "--data", "s3://bucket/items.pkl"], True)):  # not read here: unknown size
            monkeypatch.setattr(chart_draw, "_shared", None)
            cli._start_early(argv)
            painter = chart_draw._shared
            started += [painter] if painter is not None else []
            assert (painter is not None and painter.alive()) is early, argv
    finally:
        scan_child.stop()
        for painter in started:
            chart_draw._stop(painter._child)


def test_the_fixed_margins_keep_every_label_in_the_picture_and_off_the_next_chart(monkeypatch):
    """The charts are laid out with fixed margins (no tight_layout): six-digit counts, two files side by side, a
    long title and a target chart still fit, each text inside the figure and clear of its neighbour's axes."""
    from tasks import chart_draw

    figures = []
    original = chart_draw._png
    monkeypatch.setattr(chart_draw, "_png", lambda fig: figures.append(fig) or original(fig))
    histogram = [[80 + 5 * i, 450_000 + i] for i in range(40)]
    files = [{"role": role, "examples": n, "median": 158, "histogram": histogram}
             for role, n in (("validation", 2_000_000), ("train", 18_000_000))]
    charts = chart_draw.draw(files, [0.5, 999_999.0] * 10, "list_price")
    assert set(charts) == {chart_draw.TOKENS, TARGETS} and len(figures) == 2
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for fig in figures:
        renderer = FigureCanvasAgg(fig).get_renderer()  # (a closed figure has lost its own canvas)
        box = fig.bbox
        for i, ax in enumerate(fig.axes):
            (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
            ticks = [t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1]  # the ones drawn
            ticks += [t for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1]
            texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ticks]
            for text in (t for t in texts if t.get_text()):
                extent = text.get_window_extent(renderer)
                assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
                assert box.y0 <= extent.y0 and extent.y1 <= box.y1, text.get_text()
                if i:  # this chart's labels stay clear of the chart to its left
                    assert extent.x0 > fig.axes[i - 1].get_window_extent(renderer).x1, text.get_text()
