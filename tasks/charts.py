"""Charts: the dataset report as pictures (tokens per example, the target's values), drawn off the critical path.

Pure part: :func:`target_values` takes the template's target field (``target = "price"`` in the course presets)
from the training records; :func:`draw` makes the PNGs. Tasks: :func:`draw_targets` runs beside validation (it
needs only the records), :func:`draw_tokens` beside the uploads; both write into the run's generation, so the
pictures are committed with the files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger
from prefect.cache_policies import NO_CACHE

from ftprep import storage
from ftprep.models import SplitPlan, Template, ValidationReport
from ftprep.names import CHART_TARGETS, CHART_TOKENS
from ftprep.numeric import NumericError, check_number
from ftprep.records import RecordStore, project, take
from ftprep.steps import task
from tasks.split import slice_indices

MAX_POINTS = 20_000  # a histogram of more values looks the same: take an even sample


def target_values(records: Sequence[dict[str, Any]], indices: Sequence[int], field: str) -> list[float]:
    """The target's values of the selected records (an even sample of at most MAX_POINTS), numbers only."""
    step = max(1, len(indices) // MAX_POINTS)
    values = []
    chosen = indices[::step]
    batch = take(project(records, (field,)), chosen)
    for i in chosen:
        try:
            values.append(float(check_number(batch[i].get(field))))
        except NumericError:
            continue  # the write step already refused bad values of rendered fields
    return values


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(report: ValidationReport | None, targets: list[float] | None, target: str | None) -> dict[str, bytes]:
    """PNG bytes by file name: tokens per example (one bar chart per file), and the target's distribution."""
    plt = _matplotlib()
    charts: dict[str, bytes] = {}
    reports = [f for f in report.files if f.tokens and f.tokens.histogram] if report else []
    if reports:
        fig, axes = plt.subplots(1, len(reports), figsize=(5 * len(reports), 3.6), dpi=100, squeeze=False)
        for ax, f in zip(axes[0], reports, strict=True):
            edges = [edge for edge, _ in f.tokens.histogram]
            width = (edges[1] - edges[0]) if len(edges) > 1 else 1
            ax.bar(edges, [count for _, count in f.tokens.histogram], width=width, align="edge", color="steelblue")
            ax.axvline(f.tokens.median, color="darkorange", lw=1.5, label=f"median {f.tokens.median:,.0f}")
            ax.set(title=f"{f.role}: tokens per example ({f.examples:,})", xlabel="tokens", ylabel="examples")
            ax.legend()
        charts[CHART_TOKENS] = _png(fig)
    if target and targets:
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
        ax.hist(targets, bins=40, color="seagreen")
        ax.set(title=f"training {target}: {len(targets):,} values", xlabel=target, ylabel="examples")
        charts[CHART_TARGETS] = _png(fig)
    return charts


def _drawn(generation: str) -> list[str]:
    return [p for p in (storage.join(generation, CHART_TOKENS), storage.join(generation, CHART_TARGETS))
            if storage.exists(p)]


@task(name="chart-targets", cache_policy=NO_CACHE)
def draw_targets(plan: SplitPlan, template: Template, generation: str, store: RecordStore) -> list[str]:
    """The target's distribution, drawn while validation runs (it needs only the records)."""
    if not template.target or storage.exists(storage.join(generation, CHART_TARGETS)):
        _matplotlib()  # warm the import for the token chart, off the critical path
        return _drawn(generation)
    records = store.read(plan.train.dataset.path, plan.train.dataset.sha256)
    targets = target_values(records, slice_indices(plan.train), template.target)
    for name, data in draw(None, targets, template.target).items():
        storage.write_bytes(storage.join(generation, name), data)
    return _drawn(generation)


@task(name="chart-tokens", cache_policy=NO_CACHE)
def draw_tokens(report: ValidationReport, generation: str, targets: list[str]) -> list[str]:
    """Tokens per example, from the histogram in the validation report; returns every chart of the generation."""
    if not storage.exists(storage.join(generation, CHART_TOKENS)):  # a generation is content-addressed: drawn once
        for name, data in draw(report, None, None).items():
            storage.write_bytes(storage.join(generation, name), data)
    paths = _drawn(generation)
    get_run_logger().info("Pictures: %s", ", ".join(storage.name(p) for p in paths) or "none (no token counts)")
    return paths
