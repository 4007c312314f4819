"""Charts: the dataset report as pictures (tokens per example, the target's values), drawn off the critical path.

Pure part: :func:`target_values` takes the template's target field (``target = "price"`` in the course presets)
from the training records; :mod:`tasks.chart_draw` makes the PNGs in a child process. Tasks: :func:`draw_targets`
runs beside validation (it needs only the records), :func:`draw_tokens` beside the uploads; both write into the
run's generation, so the pictures are committed with the files.
"""

from __future__ import annotations

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
from tasks.chart_draw import TARGETS, TOKENS, Painter
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


def token_files(report: ValidationReport | None) -> list[dict[str, Any]]:
    """What the tokens chart shows of each file of the report that has token counts."""
    return [{"role": f.role, "examples": f.examples, "median": f.tokens.median, "histogram": f.tokens.histogram}
            for f in (report.files if report else ()) if f.tokens and f.tokens.histogram]


def _write(generation: str, charts: dict[str, bytes]) -> None:
    names = {TOKENS: CHART_TOKENS, TARGETS: CHART_TARGETS}
    for kind, data in charts.items():
        storage.write_bytes(storage.join(generation, names[kind]), data)


def _drawn(generation: str) -> list[str]:
    return [p for p in (storage.join(generation, CHART_TOKENS), storage.join(generation, CHART_TARGETS))
            if storage.exists(p)]


def _painted(painter: Painter, files: list[dict[str, Any]], targets: list[float] | None,
             target: str | None) -> dict[str, bytes]:
    """The painter's PNGs, or none (with a warning) when it did not answer in time: pictures never hold a run."""
    try:
        return painter.draw(files, targets, target)
    except TimeoutError as e:
        get_run_logger().warning("Picture skipped: %s; the files and their validation are unaffected", e)
        return {}


@task(name="chart-targets", cache_policy=NO_CACHE)
def draw_targets(plan: SplitPlan, template: Template, generation: str, store: RecordStore,
                 painter: Painter) -> list[str]:
    """The target's distribution, drawn while validation runs (it needs only the records)."""
    if template.target and not storage.exists(storage.join(generation, CHART_TARGETS)):
        records = store.read(plan.train.dataset.path, plan.train.dataset.sha256)
        targets = target_values(records, slice_indices(plan.train), template.target)
        _write(generation, _painted(painter, [], targets, template.target))
    return _drawn(generation)


@task(name="chart-tokens", cache_policy=NO_CACHE)
def draw_tokens(report: ValidationReport, generation: str, targets: list[str], painter: Painter) -> list[str]:
    """Tokens per example, from the histogram in the validation report; returns every chart of the generation."""
    files = token_files(report)
    if not storage.exists(storage.join(generation, CHART_TOKENS)):  # a generation is content-addressed: drawn once
        _write(generation, _painted(painter, files, None, None))
    paths = _drawn(generation)
    get_run_logger().info("Pictures: %s", ", ".join(storage.name(p) for p in paths)
                          or ("none" if files else "none (no token counts)"))
    return paths
