"""The commands behind ``ftprep`` that run no flow: validate, serve, notify (flows: cli/prepare.py, finetune.py)."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from cli import emit
from ftprep import logs, server
from ftprep.errors import InputError
from ftprep.openai_models import DEFAULT_MODEL


def validate(
    files: list[str] | None = None,
    *,
    train: str | None = None,
    validation: str | None = None,
    model: str = DEFAULT_MODEL,
    price_per_million: Annotated[float | None, Parameter(name="--price-per-million")] = None,
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
    exact_tokens: Annotated[bool, Parameter(negative="")] = False,
) -> int:
    """Check JSONL fine-tuning files before upload.

    Args:
        files: JSONL files, each checked on its own.
        train: Training file of a pair (checked for leakage into --validation).
        validation: Validation file of a pair.
        model: Model for token limits and price.
        price_per_million: Training price in USD per 1M tokens (default: ftprep's dated table).
        as_json: Print the report as JSON.
        exact_tokens: Count every token of large files (default: statistics from a 20,000-example sample).
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
    if validation and not train:
        raise InputError("--validation needs --train: they are checked as a pair (leakage between them, the cost of "
                         "training); to check one file on its own, give it as FILE")
    if price_per_million is not None and not (math.isfinite(price_per_million) and price_per_million >= 0):
        raise InputError(f"--price-per-million is {price_per_million}: give a price in USD of zero or more")
    report = validate_files(pairs, model=model, price_per_1m=price_per_million, exact_tokens=exact_tokens)
    emit(report.model_dump_json(indent=2) if as_json else render_text(report))
    return 0 if report.ok else 1


def serve(*names: str) -> int:
    """Serve the deployments of prefect.yaml in this process until Ctrl+C.

    Args:
        names: Deployment names to serve (default: all).
    """
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL

    from cli.deployments import refuse_pool_deployments, runner_deployments

    if not PREFECT_API_URL.value():
        raise InputError("PREFECT_API_URL is not set, so ftprep serve would serve on a temporary Prefect server that "
                         "disappears with it (no UI to trigger runs from); start one with `prefect server start` and "
                         "export PREFECT_API_URL=http://127.0.0.1:4200/api")
    logs.install()
    from ftprep import results
    from ftprep.settings import load_settings

    results.ensure(load_settings().result_storage)  # the shared result storage the served runs load (if set)
    deployments = runner_deployments(names=list(names) or None)
    refuse_pool_deployments(deployments)
    emit(f"serving {', '.join(d.name for d in deployments)} on {PREFECT_API_URL.value()}: trigger runs from the "
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
    emit(f"block      {NOTIFY_BLOCK}: {'created' if done.block_created else 'updated'} "
          f"(posts to {done.destination}/...)")
    emit(f"automation {NOTIFY_AUTOMATION}: {'created' if done.automation_created else 'updated'} "
          f"({done.automation_id})")
    emit(f"a failed or crashed {' or '.join(NOTIFY_FLOWS)} run now posts its error and a link to it; the link "
          "needs PREFECT_UI_URL set where the Prefect server runs")
    return 0
