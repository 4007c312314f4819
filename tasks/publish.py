"""Publish: leave what the next fine-tuning run needs where it will look.

Pure part: :func:`files_table` and :func:`variable_value` shape a :class:`PrepareResult` for the UI;
:func:`commit_output` writes it as ``manifest.json`` into the run's generation and commits the output (the files
and manifest become current together, :mod:`ftprep.outputs`). Task part: :func:`publish_result` commits, then
writes a table artifact and the Prefect Variable.
"""

from __future__ import annotations

import base64
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ftprep import outputs, storage, variables
from ftprep.models import PrepareResult
from ftprep.names import (
    ARTIFACT_CHARTS,
    ARTIFACT_FILES,
    DASHBOARD_FILE_URL,
    LATEST_FILES,
    artifact_key,
    artifact_openai_file,
    variable_name,
)
from ftprep.redact import redact, redact_obj
from ftprep.steps import task
from tasks.validate import publish_report


def files_table(result: PrepareResult) -> list[dict]:
    tokens = {r.role: r.tokens.total for r in result.validation.files if r.tokens} if result.validation else {}
    rows = []
    for f in result.files.files():
        remote = result.remote_file(f.role)
        rows.append({
            "role": f.role,
            "file_id": remote.id if remote else "(not uploaded)",
            "remote_name": remote.filename if remote else "",
            "status": remote.status if remote else "",
            "reused": ("yes" if remote.reused else "no") if remote else "",
            "examples": f.examples,
            "tokens": tokens.get(f.role, ""),
            "bytes": f.bytes,
            "sha256": f.sha256,
            "path": result.files.public_path(f.role),
        })
    return rows


def variable_value(result: PrepareResult) -> dict:
    """What the fine-tune run reads: file ids by role, with their hashes and local paths (JSON-safe)."""
    value = {"project": result.project, "remote": result.remote or "", "template": result.template}
    paths = {w.role: w.path for w in result.files.files()}  # evaluate's baseline reads the training prices here
    for f in result.uploaded:
        value[f"{f.role}_file_id"] = f.id
        value[f"{f.role}_sha256"] = f.sha256
        value[f"{f.role}_examples"] = f.examples
        value[f"{f.role}_path"] = paths.get(f.role, "")
    if result.validation is not None and result.validation.billable_tokens is not None:
        value["train_billable_tokens"] = result.validation.billable_tokens  # per epoch: fine-tune's --max-cost
    return value


def commit_output(result: PrepareResult) -> Path | str:
    """Write the (redacted) manifest into the run's generation and make it current: the output's commit point
    (on object storage: ``out/manifest.json``, written last in one PUT)."""
    out, generation = result.files.out_dir, storage.parent(result.files.train.path)
    if not storage.is_url(out):
        out, generation = Path(out), Path(generation)
    return outputs.commit(out, generation, redact(result.model_dump_json(indent=2)) + "\n")


def _b64(path: str) -> str:
    return base64.b64encode(storage.read_bytes(path)).decode()


@task(name="publish", cache_policy=NO_CACHE)
def publish_result(result: PrepareResult, charts: list[str] = (), dashboard_links: bool = True) -> str:
    """Write the manifest, the files table artifact and (when uploaded) the Variable the next run reads, all
    under the run's project."""
    logger = get_run_logger()
    project = result.project
    manifest = commit_output(result)
    logger.info("Committed %s: the files and manifest of this run are now current", manifest)
    out = result.files.out_dir
    if removed := outputs.clean(out if storage.is_url(out) else Path(out)):
        logger.info("Removed %s earlier output generation(s) no run uses", len(removed))
    if result.validation is not None:
        publish_report(result.validation, project)
    if charts:
        images = "\n\n".join(f"![{storage.name(c).rsplit('.', 1)[0]}](data:image/png;base64,{_b64(c)})" for c in charts)
        create_markdown_artifact(key=artifact_key(ARTIFACT_CHARTS, project),
                                 markdown=f"# The dataset in pictures\n\n{images}\n",
                                 description="Tokens per example and the target's values")
    create_table_artifact(key=artifact_key(ARTIFACT_FILES, project), table=redact_obj(files_table(result)),
                          description=f"Fine-tuning files of this run (template {result.template!r})")
    for remote in result.uploaded if dashboard_links else ():  # links only where the files are OpenAI's
        create_link_artifact(key=artifact_openai_file(remote.role, project),
                             link=DASHBOARD_FILE_URL.format(id=remote.id),
                             link_text=f"{remote.role} file {remote.id} in OpenAI's dashboard",
                             description=redact(f"{remote.filename} ({remote.bytes:,} bytes) on {result.remote}"))
    if result.uploaded:
        name = variable_name(LATEST_FILES, project)
        variables.write(name, redact_obj(variable_value(result)))
        logger.info("Stored file ids in Prefect Variable %r: %s", name,
                    ", ".join(f"{f.role}={f.id}" for f in result.uploaded))
    return str(manifest)
