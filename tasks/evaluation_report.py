"""The comparison report of an evaluation: a table (best value per column marked), comparison.json and one chart.

Pure part: :func:`table_rows` (models as rows, the best value of each column marked ★), :func:`render_markdown`,
:func:`render_text` and :func:`comparison_chart` (bars of MAE and hit rate beside one truth-vs-estimate scatter
per model, coloured as the course colours its estimates). Task: :func:`report` writes the files and artifacts.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from prefect import get_run_logger
from prefect.cache_policies import NO_CACHE

from ftprep import storage
from ftprep.models import Comparison, EvalMetrics
from ftprep.names import ARTIFACT_COMPARISON, ARTIFACT_EVALUATION, COMPARISON, COMPARISON_CHART, artifact_key
from ftprep.redact import redact, redact_obj
from ftprep.steps import task
from tasks.evaluate import band

BEST = " ★"
COLUMNS = ("model", "items", "MAE", "RMSLE", "hit rate", "no number", "failed", "tokens in/out", "cost",
           "median latency", "note")
# column -> (value of a row, True when lower is better, whether the baseline competes in it)
_RANKED: dict[str, tuple[Callable[[EvalMetrics], float | None], bool, bool]] = {
    "MAE": (lambda r: r.mae, True, True),
    "RMSLE": (lambda r: r.rmsle, True, True),
    "hit rate": (lambda r: r.hit_rate, False, True),
    "cost": (lambda r: r.cost_usd, True, False),
    "median latency": (lambda r: r.median_latency_seconds, True, False),
}


def _best(rows: Sequence[EvalMetrics]) -> dict[str, set[int]]:
    """For each ranked column, the rows holding its best value (marked only when two or more rows compete)."""
    best: dict[str, set[int]] = {}
    for column, (value, lower, baseline_competes) in _RANKED.items():
        values = {i: value(r) for i, r in enumerate(rows) if value(r) is not None
                  and (baseline_competes or r.kind != "baseline")}
        if len(values) < 2:
            continue
        target = min(values.values()) if lower else max(values.values())
        best[column] = {i for i, v in values.items() if math.isclose(v, target, rel_tol=1e-12, abs_tol=1e-12)}
    return best


def _money(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}" if value >= 0.0001 or value == 0 else f"${value:.6f}"  # an evaluation costs cents


def table_rows(comparison: Comparison) -> list[dict[str, str]]:
    """The comparison as table rows (strings), the best value of each ranked column marked ★."""
    best = _best(comparison.rows)
    rows = []
    for i, r in enumerate(comparison.rows):
        is_model = r.kind != "baseline"
        cells = {
            "model": r.model,
            "items": str(r.items),
            "MAE": f"${r.mae:,.2f}" if r.mae is not None else "—",
            "RMSLE": f"{r.rmsle:.3f}" if r.rmsle is not None else "—",
            "hit rate": f"{r.hit_rate:.1%}" if r.hit_rate is not None else "—",
            "no number": str(r.unparsed) if is_model else "—",
            "failed": str(r.failed) if is_model else "—",
            "tokens in/out": f"{r.prompt_tokens:,} / {r.completion_tokens:,}" if is_model else "—",
            "cost": _money(r.cost_usd) if is_model and r.items else "—",
            "median latency": (f"{r.median_latency_seconds:.2f} s" if r.median_latency_seconds is not None
                               else "—"),
            "note": "no API call" if not is_model else (r.error or ""),
        }
        for column, marked in best.items():
            if i in marked:
                cells[column] += BEST
        rows.append(cells)
    return rows


def render_markdown(comparison: Comparison) -> str:
    rows = table_rows(comparison)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def render_text(comparison: Comparison) -> str:
    """The table for a terminal: aligned columns, without the long notes (they follow, one line each)."""
    rows = table_rows(comparison)
    shown = [c for c in COLUMNS if c != "note"]
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in shown}
    lines = ["  ".join(c.ljust(widths[c]) for c in shown)]
    lines += ["  ".join(row[c].ljust(widths[c]) for c in shown) for row in rows]
    lines += [f"{row['model']}: {row['note']}" for row in rows if row["note"] and row["note"] != "no API call"]
    return "\n".join(line.rstrip() for line in lines)


def _short(name: str, width: int = 34) -> str:
    return name if len(name) <= width else f"{name[:14]}…{name[-(width - 15):]}"


def comparison_chart(path: Path | str, rows: Sequence[EvalMetrics],
                     panels: Sequence[tuple[str, Sequence[float], Sequence[float | None]]],
                     subtitle: str) -> Path | str:
    """Bars of MAE and hit rate per row beside a grid of truth-vs-estimate scatter plots (one per panel: label,
    truths, estimates), green for hits, orange within $80 or 40%, red beyond; estimates beyond the truths' range
    are drawn at the top edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if r.mae is not None]
    cols = max(1, min(3, math.ceil(math.sqrt(len(panels)))))
    grid_rows = max(2, math.ceil(len(panels) / cols))
    fig = plt.figure(figsize=(5.5 + 4 * cols, 3.6 * grid_rows), dpi=100)
    grid = fig.add_gridspec(grid_rows, 1 + cols, width_ratios=[1.4] + [1] * cols)
    names = [_short(r.model) for r in scored]
    bar_colours = ["grey" if r.kind == "baseline" else "steelblue" for r in scored]
    half = grid_rows // 2
    for spec, values, label, fmt in ((grid[:half, 0], [r.mae for r in scored], "mean absolute error ($)", "${:,.2f}"),
                                     (grid[half:, 0], [r.hit_rate * 100 for r in scored], "hit rate (%)", "{:.1f}%")):
        ax = fig.add_subplot(spec)
        ax.barh(range(len(scored)), values, color=bar_colours)
        ax.set_yticks(range(len(scored)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        for y, v in enumerate(values):
            ax.text(v, y, " " + fmt.format(v), va="center", fontsize=8)
        ax.set_xlim(0, 118 if label.startswith("hit") else max([*values, 1.0]) * 1.35)
    for k, (label, truths, estimates) in enumerate(panels):
        ax = fig.add_subplot(grid[k // cols, 1 + k % cols])
        guesses = [e if e is not None else 0.0 for e in estimates]
        top = max([*truths, 1.0]) * 1.25  # the truths' range: a wild estimate is drawn at the top edge
        ax.plot([0, top], [0, top], color="deepskyblue", lw=1.2, alpha=0.6)
        ax.scatter(truths, [min(g, top) for g in guesses], s=5,
                   c=[band(t, g) for t, g in zip(truths, guesses, strict=True)])
        ax.set(xlim=(0, top), ylim=(0, top), xlabel="truth ($)", ylabel="estimate ($)")
        ax.set_title(_short(label, 44), fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(subtitle, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    storage.write_bytes(path, buffer.getvalue())
    return path


@task(name="report", cache_policy=NO_CACHE)
def report(comparison: Comparison, panels: list[tuple[str, list[float], list[float | None]]], out_dir: str,
           subtitle: str) -> dict[str, str]:
    """comparison.json and comparison.png in ``out_dir``; the table artifact and a markdown artifact with both
    (the comparison's project's)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    if not storage.is_url(out_dir):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    saved = storage.join(out_dir, COMPARISON)
    storage.write_bytes(saved, redact(comparison.model_dump_json(indent=2)) + "\n")
    chart = comparison_chart(storage.join(out_dir, COMPARISON_CHART), comparison.rows, panels, redact(subtitle))
    create_table_artifact(key=artifact_key(ARTIFACT_COMPARISON, comparison.project),
                          table=redact_obj(table_rows(comparison)),
                          description=redact(f"Models on the same {comparison.items} items of {comparison.data} "
                                             f"(★ best per column); {comparison.baseline}"))
    image = base64.b64encode(storage.read_bytes(chart)).decode()
    create_markdown_artifact(
        key=artifact_key(ARTIFACT_EVALUATION, comparison.project),
        markdown=redact(f"# Did fine-tuning pay off?\n\n{comparison.items} items of `{comparison.data}`; "
                        f"{comparison.baseline}. Prices as of {comparison.prices_as_of}; ★ marks the best value "
                        f"of a column.\n\n"
                        + (f"> **Warning:** {comparison.trained_on}.\n\n" if comparison.trained_on else "")
                        + f"{render_markdown(comparison)}\n\n")
        + f"![comparison](data:image/png;base64,{image})\n",
        description=f"Comparison of {len(comparison.rows)} rows",
    )
    get_run_logger().info("Wrote %s and %s", saved, chart)
    return {"comparison": str(saved), "chart": str(chart)}
