"""``ftprep fine-tune`` and ``ftprep evaluate``: run the flow, print the job or the comparison."""

from __future__ import annotations

import os

from cli import emit
from cli.main import before_flow, command, print_json
from flows.evaluate import evaluate as evaluate_flow
from flows.finetune import fine_tune as fine_tune_flow


def _fine_tune(as_json: bool, **options) -> int:
    before_flow()
    result = fine_tune_flow(**options)
    if as_json:
        return print_json(result)
    emit(f"job {result.job_id}: {result.status}; model {result.fine_tuned_model}; "
          f"{result.trained_tokens or 0:,} trained tokens{' (existing job reused)' if result.reused else ''}")
    return 0


def _evaluate(as_json: bool, **options) -> int:
    from ftprep.names import COMPARISON, COMPARISON_CHART
    from tasks.evaluation_report import render_text

    before_flow()
    comparison = evaluate_flow(**options)
    if as_json:
        return print_json(comparison)
    out = options.get("out", "eval")
    emit(f"{comparison.items} items of {comparison.data}; {comparison.baseline}")
    if comparison.trained_on:
        emit(f"warning: {comparison.trained_on}")
    emit(render_text(comparison))
    emit(f"wrote {os.path.join(out, COMPARISON)} and {os.path.join(out, COMPARISON_CHART)}")
    return 0


fine_tune = command(fine_tune_flow.fn, _fine_tune, flatten=["job"])
evaluate = command(evaluate_flow.fn, _evaluate, rename={"models": "--model"})
