"""Publish: leave what the next fine-tuning run needs where it will look.

Pure part: :func:`files_table` and :func:`variable_value` shape a :class:`PrepareResult` for the UI;
:func:`write_manifest` writes it as JSON beside the JSONL files (atomically). Task part:
:func:`publish_result` writes the manifest, a table artifact and the Prefect Variable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.variables import Variable

from ftprep.models import PrepareResult

VARIABLE_NAME = "ftprep_latest_files"
ARTIFACT_KEY = "ftprep-files"
MANIFEST_NAME = "manifest.json"


DASHBOARD = "https://platform.openai.com/storage/files/{id}"


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
            "path": f.path,
        })
    return rows


def variable_value(result: PrepareResult) -> dict:
    """What the fine-tune run reads: file ids by role, with their hashes (JSON-safe)."""
    value = {"remote": result.remote or "", "template": result.template}
    for f in result.uploaded:
        value[f"{f.role}_file_id"] = f.id
        value[f"{f.role}_sha256"] = f.sha256
        value[f"{f.role}_examples"] = f.examples
    return value


def write_manifest(result: PrepareResult) -> Path:
    out_dir = Path(result.files.out_dir)
    target = out_dir / MANIFEST_NAME
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST_NAME}.", dir=out_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(result.model_dump_json(indent=2) + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@task(name="publish")
def publish_result(result: PrepareResult) -> str:
    """Write the manifest, the files table artifact and (when uploaded) the Variable the next run reads."""
    logger = get_run_logger()
    manifest = write_manifest(result)
    logger.info("Wrote manifest %s", manifest)
    create_table_artifact(key=ARTIFACT_KEY, table=files_table(result),
                          description=f"Fine-tuning files of this run (template {result.template!r})")
    for remote in result.uploaded:
        create_link_artifact(key=f"ftprep-openai-{remote.role}", link=DASHBOARD.format(id=remote.id),
                             link_text=f"{remote.role} file {remote.id} in OpenAI's dashboard",
                             description=f"{remote.filename} ({remote.bytes:,} bytes) on {result.remote}")
    if result.uploaded:
        Variable.set(VARIABLE_NAME, variable_value(result), overwrite=True)
        logger.info("Stored file ids in Prefect Variable %r: %s", VARIABLE_NAME,
                    ", ".join(f"{f.role}={f.id}" for f in result.uploaded))
    return str(manifest)
