"""The ``ftprep`` command: prepare, validate, fine-tune, evaluate, serve.

Expected errors (:class:`FtprepError`) print one line, ``error: ...``, and exit non-zero with no
traceback; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from ftprep.errors import FtprepError, InputError


class _HideExpectedTracebacks(logging.Filter):
    """Prefect logs a failed run's exception with its traceback; for expected errors one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, FtprepError):
            record.exc_info, record.exc_text = None, None
        return True


def hide_expected_tracebacks() -> None:
    flt = _HideExpectedTracebacks()
    for name in ("", "prefect"):
        for handler in logging.getLogger(name).handlers:
            if flt not in handler.filters:
                handler.addFilter(flt)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftprep",
        description="Turn a dataset into validated OpenAI fine-tuning files, upload them, fine-tune and evaluate, "
                    "as Prefect flows. Settings (OPENAI_API_KEY, OPENAI_BASE_URL) come from the environment or .env.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write fine-tuning JSONL files from a dataset and upload them")
    p.add_argument("--data", required=True, help="dataset file: .pkl, .csv, .jsonl or .parquet")
    p.add_argument("--validation-data", help="separate dataset for validation examples (default: --data)")
    p.add_argument("--train-size", type=int, default=500, help="training examples (default 500)")
    p.add_argument("--validation-size", type=int, default=50, help="validation examples (default 50)")
    p.add_argument("--train-offset", type=int, default=0, help="position of the first training record (default 0)")
    p.add_argument("--validation-offset", type=int, default=None,
                   help="position of the first validation record (default: right after training)")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=False,
                   help="shuffle records before splitting (default: file order, like the course)")
    p.add_argument("--seed", type=int, default=42, help="seed for --shuffle (default 42)")
    p.add_argument("--template", default="course",
                   help="preset (course, course-summary) or a .json/.toml template file (default course)")
    p.add_argument("--out", default="out", help="output folder (default ./out)")
    p.add_argument("--upload", action=argparse.BooleanOptionalAction, default=True,
                   help="upload to OpenAI when OPENAI_API_KEY is set (default: yes)")
    p.add_argument("--model", default=None,
                   help="model the files are for: token limit and cost (gpt-4o-mini-2024-07-18)")

    f = sub.add_parser("fine-tune", help="start (once) and follow a fine-tuning job on the latest prepared files")
    f.add_argument("--training-file", help="OpenAI file id (default: the latest prepare run's)")
    f.add_argument("--validation-file", help="OpenAI file id (default: the latest prepare run's)")
    f.add_argument("--model", default="gpt-4o-mini-2024-07-18", help="base model (gpt-4o-mini-2024-07-18)")
    f.add_argument("--seed", type=int, default=42, help="job seed (42)")
    f.add_argument("--epochs", type=int, default=1, help="n_epochs (1)")
    f.add_argument("--suffix", default="pricer", help="model name suffix (pricer)")
    f.add_argument("--wandb-project", help="report to this Weights & Biases project (e.g. gpt-pricer)")
    f.add_argument("--cancel-job-on-cancel", action=argparse.BooleanOptionalAction, default=True,
                   help="cancel the OpenAI job when the run is cancelled (default: yes)")

    e = sub.add_parser("evaluate", help="measure a model's price estimates on test items")
    e.add_argument("--data", required=True, help="test dataset with prices")
    e.add_argument("--out", default="eval", help="folder for metrics.json and chart.png (default ./eval)")
    e.add_argument("--model", help="model to evaluate (default: the latest fine-tuned model)")
    e.add_argument("--n", type=int, default=250, help="items to evaluate (250)")
    e.add_argument("--sample-seed", type=int, help="evaluate a seeded random sample instead of the first N")
    e.add_argument("--template", default="course", help="the template the model was trained with (course)")
    e.add_argument("--concurrency", type=int, default=8, help="calls in flight at once (8)")

    s = sub.add_parser("serve", help="serve the deployments of prefect.yaml (no work pool or worker needed)")
    s.add_argument("names", nargs="*", help="deployment names to serve (default: all)")

    v = sub.add_parser("validate", help="check JSONL fine-tuning files before upload; exit 0 valid, 1 not valid")
    v.add_argument("files", nargs="*", type=Path, metavar="FILE", help="JSONL files, each checked on its own")
    v.add_argument("--train", type=Path, help="training file of a pair (checked for leakage into --validation)")
    v.add_argument("--validation", type=Path, help="validation file of a pair")
    v.add_argument("--model", default=None, help="model for token limits and price (gpt-4o-mini-2024-07-18)")
    v.add_argument("--price-per-million", type=float, default=None,
                   help="training price in USD per 1M tokens (default: ftprep's dated table)")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _fine_tune(args: argparse.Namespace) -> int:
    from flows.finetune import fine_tune
    from ftprep.models import FineTuneConfig

    config = FineTuneConfig(model=args.model, seed=args.seed, n_epochs=args.epochs, suffix=args.suffix,
                            wandb_project=args.wandb_project)
    hide_expected_tracebacks()
    result = fine_tune(training_file=args.training_file, validation_file=args.validation_file, job=config,
                       cancel_job_on_cancel=args.cancel_job_on_cancel)
    print(f"job {result.job_id}: {result.status}; model {result.fine_tuned_model}; "
          f"{result.trained_tokens or 0:,} trained tokens{' (existing job reused)' if result.reused else ''}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from flows.evaluate import evaluate

    hide_expected_tracebacks()
    m = evaluate(data=args.data, out=args.out, model=args.model, n=args.n, sample_seed=args.sample_seed,
                 template=args.template, concurrency=args.concurrency)
    print(f"{m.model} on {m.items} items: mean absolute error ${m.mae:,.2f}, RMSLE {m.rmsle:.3f}, "
          f"hit rate {m.hit_rate:.1%} (within $40 or 20%), unparsed replies {m.unparsed}")
    print(f"wrote {os.path.join(args.out, 'metrics.json')} and {os.path.join(args.out, 'chart.png')}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from prefect import serve

    from ftprep.deployments import runner_deployments

    hide_expected_tracebacks()
    deployments = runner_deployments(names=args.names or None)
    print(f"serving {', '.join(d.name for d in deployments)}: trigger runs from the Prefect UI; Ctrl+C stops")
    serve(*deployments)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from ftprep.openai_models import DEFAULT_MODEL
    from tasks.validate import render_text, validate_files

    files = [(f, "file") for f in args.files]
    if args.train:
        files.append((args.train, "train"))
    if args.validation:
        files.append((args.validation, "validation"))
    if not files:
        raise InputError("no files to validate; give FILE... or --train FILE --validation FILE")
    report = validate_files(files, model=args.model or DEFAULT_MODEL, price_per_1m=args.price_per_million)
    print(report.model_dump_json(indent=2) if args.json else render_text(report))
    return 0 if report.ok else 1


def _preflight(args: argparse.Namespace) -> None:
    """Catch the common mistakes (a wrong path, an unknown template or model) before Prefect starts."""
    from ftprep.openai_models import model_spec
    from tasks.format import resolve_template, template_fields
    from tasks.load import check_readable, detect_format

    for option, value in (("--data", args.data), ("--validation-data", args.validation_data)):
        if value is not None:
            check_readable(Path(value), option)
            detect_format(Path(value))
    template_fields(resolve_template(args.template))
    if args.model:
        model_spec(args.model)
    out = Path(args.out).resolve()
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"output folder {out} cannot be created: {existing} is a file; choose another --out")


def _prepare(args: argparse.Namespace) -> int:
    from ftprep.models import SplitConfig

    split = SplitConfig(train_size=args.train_size, validation_size=args.validation_size,
                        train_offset=args.train_offset, validation_offset=args.validation_offset,
                        shuffle=args.shuffle, seed=args.seed)
    _preflight(args)
    from flows.prepare import prepare  # imports Prefect: keep --help fast

    hide_expected_tracebacks()
    from ftprep.openai_models import DEFAULT_MODEL

    result = prepare(data=args.data, validation_data=args.validation_data, split=split,
                     template=args.template, out=args.out, upload=args.upload, model=args.model or DEFAULT_MODEL)
    for f in result.files.files():
        remote = result.remote_file(f.role)
        where = f" -> {remote.id} ({'reused' if remote.reused else 'uploaded'})" if remote else ""
        print(f"{f.role:<10} {f.path}: {f.examples:,} examples, {f.bytes:,} bytes, sha256 {f.sha256[:16]}{where}")
    print(f"manifest   {os.path.join(result.files.out_dir, 'manifest.json')}")
    if result.validation is not None:
        from tasks.validate import render_text

        print(render_text(result.validation).splitlines()[-1].replace("valid:", "validation: valid,", 1))
    if result.upload_skipped_reason:
        print(result.upload_skipped_reason)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"prepare": _prepare, "fine-tune": _fine_tune, "evaluate": _evaluate, "serve": _serve,
                "validate": _validate}[args.command](args)
    except FtprepError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except ValidationError as e:  # an option outside its range, caught by the typed parameter models
        first = e.errors()[0]
        option = "--" + str(first["loc"][-1]).replace("_", "-") if first["loc"] else "an option"
        print(f"error: {option}: {first['msg']} (got {first.get('input')!r}); see ftprep {args.command} --help",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
