"""The commands behind ``ftprep``: each checks what it cheaply can, runs its flow and prints what it made."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from cli.main import command
from flows.evaluate import evaluate as evaluate_flow
from flows.finetune import fine_tune as fine_tune_flow
from flows.prepare import prepare as prepare_flow
from ftprep import logs, server
from ftprep.errors import InputError
from ftprep.openai_models import DEFAULT_MODEL


def _preflight(data: str, validation_data: str | None, template: str, out: str, model: str) -> None:
    """Catch the common mistakes (a wrong path, an unknown template or model) before Prefect starts."""
    from ftprep.openai_models import model_spec
    from tasks.format import resolve_template, template_fields
    from tasks.load import check_readable, detect_format

    for option, value in (("--data", data), ("--validation-data", validation_data)):
        if value is not None:
            check_readable(Path(value), option)
            detect_format(Path(value))
    template_fields(resolve_template(template))
    model_spec(model)
    target = Path(out).resolve()
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"output folder {target} cannot be created: {existing} is a file; choose another --out")


def _print_json(result) -> int:
    from ftprep.redact import redact

    print(redact(result.model_dump_json(indent=2)))
    return 0


def _prepare(as_json: bool, **options) -> int:
    from tasks.validation_report import render_text

    _preflight(options["data"], options.get("validation_data"), options.get("template", "course"),
               options.get("out", "out"), options.get("model", DEFAULT_MODEL))
    logs.install()
    server.ready()
    result = prepare_flow(**options)
    if as_json:
        return _print_json(result)
    for f in result.files.files():
        remote = result.remote_file(f.role)
        where = f" -> {remote.id} ({'reused' if remote.reused else 'uploaded'})" if remote else ""
        print(f"{f.role:<10} {result.files.public_path(f.role)}: {f.examples:,} examples, {f.bytes:,} bytes, "
              f"sha256 {f.sha256[:16]}{where}")
    print(f"manifest   {os.path.join(result.files.out_dir, 'manifest.json')}")
    if result.validation is not None:
        print(render_text(result.validation).splitlines()[-1].replace("valid:", "validation: valid,", 1))
    if result.upload_skipped_reason:
        print(result.upload_skipped_reason)
    return 0


def _fine_tune(as_json: bool, **options) -> int:
    logs.install()
    server.ready()
    result = fine_tune_flow(**options)
    if as_json:
        return _print_json(result)
    print(f"job {result.job_id}: {result.status}; model {result.fine_tuned_model}; "
          f"{result.trained_tokens or 0:,} trained tokens{' (existing job reused)' if result.reused else ''}")
    return 0


def _evaluate(as_json: bool, **options) -> int:
    from ftprep.names import COMPARISON, COMPARISON_CHART
    from tasks.evaluation_report import render_text

    logs.install()
    server.ready()
    comparison = evaluate_flow(**options)
    if as_json:
        return _print_json(comparison)
    out = options.get("out", "eval")
    print(f"{comparison.items} items of {comparison.data}; {comparison.baseline}")
    print(render_text(comparison))
    print(f"wrote {os.path.join(out, COMPARISON)} and {os.path.join(out, COMPARISON_CHART)}")
    return 0


prepare = command(prepare_flow.fn, _prepare, flatten=["split"])
fine_tune = command(fine_tune_flow.fn, _fine_tune, flatten=["job"])
evaluate = command(evaluate_flow.fn, _evaluate, rename={"models": "--model"})


def validate(
    files: list[Path] | None = None,
    *,
    train: Path | None = None,
    validation: Path | None = None,
    model: str = DEFAULT_MODEL,
    price_per_million: Annotated[float | None, Parameter(name="--price-per-million")] = None,
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
) -> int:
    """Check JSONL fine-tuning files before upload.

    Args:
        files: JSONL files, each checked on its own.
        train: Training file of a pair (checked for leakage into --validation).
        validation: Validation file of a pair.
        model: Model for token limits and price.
        price_per_million: Training price in USD per 1M tokens (default: ftprep's dated table).
        as_json: Print the report as JSON.
    """
    import math

    from tasks.validate import validate_files
    from tasks.validation_report import render_text

    pairs = [(f, "file") for f in files or []]
    if train:
        pairs.append((train, "train"))
    if validation:
        pairs.append((validation, "validation"))
    if not pairs:
        raise InputError("no files to validate; give FILE... or --train FILE --validation FILE")
    if price_per_million is not None and not (math.isfinite(price_per_million) and price_per_million >= 0):
        raise InputError(f"--price-per-million is {price_per_million}: give a price in USD of zero or more")
    report = validate_files(pairs, model=model, price_per_1m=price_per_million)
    print(report.model_dump_json(indent=2) if as_json else render_text(report))
    return 0 if report.ok else 1


def serve(*names: str) -> int:
    """Serve the deployments of prefect.yaml in this process until Ctrl+C.

    Args:
        names: Deployment names to serve (default: all).
    """
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL

    from cli.deployments import runner_deployments

    if not PREFECT_API_URL.value():
        raise InputError("PREFECT_API_URL is not set, so ftprep serve would serve on a temporary Prefect server that "
                         "disappears with it (no UI to trigger runs from); start one with `prefect server start` and "
                         "export PREFECT_API_URL=http://127.0.0.1:4200/api")
    logs.install()
    deployments = runner_deployments(names=list(names) or None)
    print(f"serving {', '.join(d.name for d in deployments)} on {PREFECT_API_URL.value()}: trigger runs from the "
          "Prefect UI; Ctrl+C stops")
    prefect_serve(*deployments)
    return 0


def notify(*, webhook_url: Annotated[str | None, Parameter(name="--webhook-url")] = None) -> int:
    """Post to a webhook when a prepare or fine-tune run fails or crashes, with its error and a link to it.

    Saves the notification block and the automation on the server PREFECT_API_URL names; running it again
    updates both. The link needs PREFECT_UI_URL (e.g. http://127.0.0.1:4200) in the server's environment.

    Args:
        webhook_url: Where to post (default: FTPREP_NOTIFY_WEBHOOK_URL from the environment or .env).
    """
    from ftprep import notify as notification
    from ftprep.names import NOTIFY_AUTOMATION, NOTIFY_BLOCK, NOTIFY_FLOWS
    from ftprep.redact import register_secrets
    from ftprep.settings import load_settings

    settings = load_settings()
    if webhook_url is not None:
        register_secrets([webhook_url])  # a webhook URL is its own credential: never printed or logged
    url = webhook_url or (settings.notify_webhook_url.get_secret_value() if settings.notify_webhook_url else None)
    if not url or not url.strip():
        raise InputError("no webhook URL: give --webhook-url URL or set FTPREP_NOTIFY_WEBHOOK_URL")
    notification.destination(url.strip())  # an http(s) URL, checked before anything is sent
    if not server.configured_api_url():
        raise InputError("PREFECT_API_URL is not set: the notification lives on the Prefect server that runs the "
                         "deployments; export PREFECT_API_URL=http://127.0.0.1:4200/api (or your server's) and "
                         "run again")
    logs.install()
    done = notification.install(url.strip())
    print(f"block      {NOTIFY_BLOCK}: {'created' if done.block_created else 'updated'} "
          f"(posts to {done.destination}/...)")
    print(f"automation {NOTIFY_AUTOMATION}: {'created' if done.automation_created else 'updated'} "
          f"({done.automation_id})")
    print(f"a failed or crashed {' or '.join(NOTIFY_FLOWS)} run now posts its error and a link to it; the link "
          "needs PREFECT_UI_URL set where the Prefect server runs")
    return 0
