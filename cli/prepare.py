"""``ftprep prepare``: check the inputs cheaply, run the prepare flow, print what it made."""

from __future__ import annotations

from pathlib import Path

from cli import emit
from cli.main import before_flow, command, print_json
from flows.prepare import prepare as prepare_flow
from ftprep import storage
from ftprep.errors import InputError
from ftprep.openai_models import DEFAULT_MODEL


def _preflight(data: str, validation_data: str | None, template: str, out: str, model: str) -> None:
    """Catch the common mistakes (a wrong path or URL, an unknown template or model) before Prefect starts; start
    hashing the datasets (the load task's cache key) while Prefect starts the run."""
    from ftprep.fsio import hash_ahead
    from ftprep.openai_models import model_spec
    from tasks.format import resolve_template, template_fields
    from tasks.load import check_readable, detect_format

    for option, value in (("--data", data), ("--validation-data", validation_data)):
        if value is not None:
            check_readable(value, option)
            detect_format(value)
            if not storage.is_url(value := storage.normalize(value, option)):  # a local file's hash is remembered
                hash_ahead(value)
    template_fields(resolve_template(template))
    model_spec(model)
    out = storage.normalize(out, "--out")
    if storage.is_url(out):
        storage.check_out(out)
        return
    target = Path(out)
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"output folder {target} cannot be created: {existing} is a file; choose another --out")


def _prepare(as_json: bool, **options) -> int:
    from tasks.validation_report import render_text

    _preflight(options["data"], options.get("validation_data"), options.get("template", "course"),
               options.get("out", "out"), options.get("model", DEFAULT_MODEL))
    before_flow()
    result = prepare_flow(**options)
    if as_json:
        return print_json(result)
    for f in result.files.files():
        remote = result.remote_file(f.role)
        where = f" -> {remote.id} ({'reused' if remote.reused else 'uploaded'})" if remote else ""
        emit(f"{f.role:<10} {result.files.public_path(f.role)}: {f.examples:,} examples, {f.bytes:,} bytes, "
              f"sha256 {f.sha256[:16]}{where}")
    emit(f"manifest   {storage.join(result.files.out_dir, 'manifest.json')}")
    if result.validation is not None:
        emit(render_text(result.validation).splitlines()[-1].replace("valid:", "validation: valid,", 1))
    if result.upload_skipped_reason:
        emit(result.upload_skipped_reason)
    return 0


prepare = command(prepare_flow.fn, _prepare, flatten=["split"])
