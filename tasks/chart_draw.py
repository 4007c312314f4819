"""Charts drawn in a child process: matplotlib is imported there on another core, beside the command's start.

Importing matplotlib costs more CPU than a whole everyday run's own work, and drawing in the flow's process would
hold its GIL while validation and the uploads need it. :class:`Painter` starts ``python tasks/chart_draw.py`` as
the command starts, or as a run begins to read its data (only the standard library and matplotlib are imported
there; no credential is in its environment) and asks it for PNGs, one JSON line each way; when the child cannot
be used, the same :func:`draw` runs in this process. One child serves every run of a process
(:meth:`Painter.shared`), so a process that runs many flows imports matplotlib once. The child leaves when its
input closes, so it never outlives that process.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import weakref
from typing import Any

TOKENS, TARGETS = "tokens", "targets"
CHART_SECONDS = 60.0  # a chart request not answered by then is given up (the first one imports matplotlib)
_SHARED_LOCK = threading.Lock()
_shared: Painter | None = None


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# margins in inches around a row of axes: room for the title, the tick labels (counts up to six digits) and the
# axis labels; fixed, because tight_layout measures every text first, a third of a chart's drawing time
LEFT, RIGHT, BOTTOM, TOP, GAP = 0.95, 0.2, 0.6, 0.4, 1.15


def _png(fig: Any) -> bytes:
    plt = _matplotlib()
    buffer = io.BytesIO()
    width, height = fig.get_size_inches()
    n = len(fig.axes)
    axis = (width - LEFT - RIGHT - (n - 1) * GAP) / n
    fig.subplots_adjust(left=LEFT / width, right=1 - RIGHT / width, bottom=BOTTOM / height, top=1 - TOP / height,
                        wspace=GAP / axis)
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def draw(files: list[dict[str, Any]], targets: list[float] | None, target: str | None) -> dict[str, bytes]:
    """PNG bytes by kind: tokens per example (one bar chart per file: role, examples, median, histogram), and the
    target's distribution."""
    plt = _matplotlib()
    charts: dict[str, bytes] = {}
    if files:
        fig, axes = plt.subplots(1, len(files), figsize=(5 * len(files), 3.6), dpi=100, squeeze=False)
        for ax, f in zip(axes[0], files, strict=True):
            edges = [edge for edge, _ in f["histogram"]]
            width = (edges[1] - edges[0]) if len(edges) > 1 else 1
            ax.bar(edges, [count for _, count in f["histogram"]], width=width, align="edge", color="steelblue")
            ax.axvline(f["median"], color="darkorange", lw=1.5, label=f"median {f['median']:,.0f}")
            ax.set(title=f"{f['role']}: tokens per example ({f['examples']:,})", xlabel="tokens", ylabel="examples")
            ax.legend()
        charts[TOKENS] = _png(fig)
    if target and targets:
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
        ax.hist(targets, bins=40, color="seagreen")
        ax.set(title=f"training {target}: {len(targets):,} values", xlabel=target, ylabel="examples")
        charts[TARGETS] = _png(fig)
    return charts


class Painter:
    """A child process that draws charts; started at once, so that its import runs beside the caller's work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hung: str | None = None
        from ftprep import children  # here, not at the top: the child runs this file with the standard library

        try:
            self._child: subprocess.Popen | None = subprocess.Popen(
                [sys.executable, "-I", __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=children.environment("MPLCONFIGDIR"),
                preexec_fn=children.preexec(helper=True), **children.HELPER_GROUP)  # its own group: killed whole
        except OSError:
            self._child = None
        weakref.finalize(self, _stop, self._child)

    @classmethod
    def shared(cls) -> Painter:
        """This process's painter: the running one, or a new one if there is none or its child has gone."""
        global _shared
        with _SHARED_LOCK:
            if _shared is None or not _shared.alive():
                _shared = cls()
            return _shared

    def alive(self) -> bool:
        child = self._child
        return child is not None and child.poll() is None

    def draw(self, files: list[dict[str, Any]], targets: list[float] | None, target: str | None,
             timeout: float | None = None) -> dict[str, bytes]:
        """The PNGs by kind. A child that has gone is replaced by drawing here; one that does not answer within
        ``timeout`` seconds (CHART_SECONDS) is killed, so the next run starts another, and this raises
        :class:`TimeoutError`, now and for the rest of this painter's requests: a stuck picture never holds a run."""
        timeout = CHART_SECONDS if timeout is None else timeout
        with self._lock:
            if self._hung:  # whatever held it may hold this process too: no drawing here either
                raise TimeoutError(self._hung)
            child = self._child
            if child is not None:
                reply: list[Any] = []

                def exchange() -> None:
                    try:
                        child.stdin.write(json.dumps([files, targets, target]).encode() + b"\n")
                        child.stdin.flush()
                        reply.append(json.loads(child.stdout.readline()))
                    except Exception as e:  # noqa: BLE001 - handed to the caller below
                        reply.append(e)

                talk = threading.Thread(target=exchange, name="ftprep-charts", daemon=True)
                talk.start()
                talk.join(timeout)
                if talk.is_alive():
                    # the child and whatever it started (matplotlib runs fc-list), so that the pipes close and the
                    # exchange ends; its streams are left to it (closing them here would wait for its lock)
                    _kill_group(child)
                    self._child = None
                    self._hung = f"the chart process did not answer within {timeout:g} s"
                    raise TimeoutError(self._hung)
                if isinstance(reply[0], dict):
                    return {kind: base64.b64decode(data) for kind, data in reply[0].items()}
                _stop(child)
                self._child = None
                if not isinstance(reply[0], (OSError, ValueError)):  # not a child that has gone: a bug, shown
                    raise reply[0]
                # the child is gone: draw here instead
        return draw(files, targets, target)


def _kill_group(child: subprocess.Popen) -> None:
    """SIGKILL to the child's process group (its own, with its children), then reap the child."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:  # already gone
        pass
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _stop(child: subprocess.Popen | None) -> None:
    """Close the child's input: it reads the end and leaves (:func:`ftprep.children.close_pipes`)."""
    from ftprep.children import close_pipes  # here, not at the top: the child runs this file with the standard library

    if child is not None:
        close_pipes(child)


def _serve() -> None:
    _matplotlib()
    draw([], [0.0], "warm-up")  # fonts and the PNG writer, before the first request
    for line in sys.stdin.buffer:
        files, targets, target = json.loads(line)
        charts = draw(files, targets, target)
        sys.stdout.write(json.dumps({k: base64.b64encode(v).decode() for k, v in charts.items()}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
