"""Every name ftprep gives things in Prefect and on disk: flows, projects, Variables, artifact keys, blocks, files."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

from ftprep.errors import InputError

# Flows (the names the UI, deployments and the failure automation use)
FLOW_PREPARE = "prepare"
FLOW_FINE_TUNE = "fine-tune"
FLOW_EVALUATE = "evaluate"

# Projects: the namespace of the Variables and artifact keys below, so two datasets or two teammates sharing one
# Prefect server each keep their own "latest". The flows' ``project`` parameter (--project) wins; when it is
# not given, FTPREP_PROJECT; when neither is, "default", whose names are the plain ones below (as before projects).
# Another project's names carry it as a suffix: Variable ``ftprep_latest_files__team-a``, artifact key
# ``ftprep-files--team-a``. A project name is valid in both (Prefect allows lowercase letters, digits and dashes
# in artifact keys; those and underscores in Variable names), and has no "--", so a suffix reads back unambiguously.
DEFAULT_PROJECT = "default"
PROJECT_MAX = 63
_PROJECT = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
PROJECT_RULE = (f"1 to {PROJECT_MAX} lowercase letters, digits and single dashes, starting and ending with a letter "
                "or digit (e.g. team-a)")


def project_problem(name: object) -> str | None:
    """Why ``name`` cannot be a project name, or None when it can."""
    if not isinstance(name, str):
        return f"a project name is text, not {type(name).__name__}"
    if len(name) > PROJECT_MAX or not _PROJECT.fullmatch(name):
        return f"a project name is {PROJECT_RULE}"
    return None


def _project_parameter(value: object) -> object:
    """The ``project`` flow parameter (--project), checked before a run starts: blank is not given."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if (problem := project_problem(value)) is not None:
        raise InputError(f"project (--project) {value!r} is not allowed: {problem}")
    return value


# The flows' ``project`` parameter: a bad name is a one-line InputError before the flow runs, whether it comes
# from the command line (cyclopts validates it) or a deployment's run form (Prefect validates the parameters)
ProjectParameter = Annotated[str | None, BeforeValidator(_project_parameter)]


def project_of(parameter: str | None, setting: str) -> str:
    """The project a run works in: its ``project`` parameter when given, else the FTPREP_PROJECT setting."""
    given = _project_parameter(parameter)
    return given if given is not None else setting


def project_option(project: str) -> str:
    """The option that names ``project`` in a hint to run another command (" --project team-a"; "" for the default)."""
    return "" if project == DEFAULT_PROJECT else f" --project {project}"


def variable_name(base: str, project: str) -> str:
    """Variable ``base`` (e.g. LATEST_FILES) of ``project``: ``base`` itself in the default project."""
    return base if project == DEFAULT_PROJECT else f"{base}__{project}"


def artifact_key(base: str, project: str) -> str:
    """Artifact key ``base`` (e.g. ARTIFACT_FILES) of ``project``: ``base`` itself in the default project."""
    return base if project == DEFAULT_PROJECT else f"{base}--{project}"


# Prefect Variables: what one flow leaves for the next (the default project's names; see :func:`variable_name`)
LATEST_FILES = "ftprep_latest_files"  # file ids of the latest prepare run that uploaded
LATEST_JOB = "ftprep_latest_job"  # the latest fine-tuning job, whatever its outcome
LATEST_MODEL = "ftprep_latest_model"  # the latest job that succeeded: what evaluate uses
RUN_JOB_PREFIX = "ftprep-run-job-"  # + a fine-tune flow run's id: the job that run follows (removed when it ends)


def run_job_variable(flow_run_id: object) -> str:
    """The Variable that records which fine-tuning job one fine-tune flow run follows."""
    return f"{RUN_JOB_PREFIX}{flow_run_id}"


# Prefect global concurrency limits shared by every run on every worker (ftprep.limits.slot)
OPENAI_CONCURRENCY_LIMIT = "ftprep-openai"  # OpenAI requests in flight at once (FTPREP_OPENAI_CONCURRENCY)
OPENAI_RATE_LIMIT = "ftprep-openai-rpm"  # OpenAI requests per minute (FTPREP_OPENAI_RPM)

# Shared result storage (FTPREP_RESULT_STORAGE): one saved Prefect block per URL, so every machine that sets the same
# URL names the same block (ftprep.results)
RESULT_STORAGE_BLOCK_PREFIX = "ftprep-results-"


def result_storage_block(url: str) -> str:
    """The name of the Prefect block (type remote-file-system) that stores results and cache records at ``url``."""
    import hashlib

    return RESULT_STORAGE_BLOCK_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:12]


# Artifact keys (stable, so the UI shows each one's history across runs; the default project's: :func:`artifact_key`)
ARTIFACT_FILES = "ftprep-files"
ARTIFACT_CHARTS = "ftprep-dataset-charts"
ARTIFACT_VALIDATION = "ftprep-validation"
ARTIFACT_TOKEN_STATS = "ftprep-token-stats"
ARTIFACT_WRITE_PROGRESS = "ftprep-write-progress"
ARTIFACT_FINE_TUNE = "ftprep-fine-tune"
ARTIFACT_EVALUATION = "ftprep-evaluation"  # the comparison report (markdown, with its chart)
ARTIFACT_COMPARISON = "ftprep-comparison"  # the comparison table: models as rows


# The failure notification (``ftprep notify``): its webhook block and its automation
NOTIFY_BLOCK = "ftprep-run-failed"
NOTIFY_AUTOMATION = "ftprep: prepare or fine-tune run failed"
NOTIFY_FLOWS = (FLOW_PREPARE, FLOW_FINE_TUNE)


def artifact_openai_file(role: str, project: str = DEFAULT_PROJECT) -> str:
    return artifact_key(f"ftprep-openai-{role}", project)


# Output files (the names the course writes)
FILE_NAMES = {"train": "fine_tune_train.jsonl", "validation": "fine_tune_validation.jsonl"}
MANIFEST = "manifest.json"
CHART_TOKENS = "tokens.png"  # tokens per example, committed with the files
CHART_TARGETS = "targets.png"  # the template's target values (e.g. prices)
COMPARISON = "comparison.json"  # evaluate: every model's metrics
COMPARISON_CHART = "comparison.png"

DASHBOARD_FILE_URL = "https://platform.openai.com/storage/files/{id}"
