"""Every name ftprep gives things in Prefect and on disk: flows, Variables, artifact keys, blocks, output files."""

from __future__ import annotations

# Flows (the names the UI, deployments and the failure automation use)
FLOW_PREPARE = "prepare"
FLOW_FINE_TUNE = "fine-tune"
FLOW_EVALUATE = "evaluate"

# Prefect Variables: what one flow leaves for the next
LATEST_FILES = "ftprep_latest_files"  # file ids of the latest prepare run that uploaded
LATEST_JOB = "ftprep_latest_job"  # the latest fine-tuning job, whatever its outcome
LATEST_MODEL = "ftprep_latest_model"  # the latest job that succeeded: what evaluate uses
RUN_JOB_PREFIX = "ftprep-run-job-"  # + a fine-tune flow run's id: the job that run follows (removed when it ends)


def run_job_variable(flow_run_id: object) -> str:
    """The Variable that records which fine-tuning job one fine-tune flow run follows."""
    return f"{RUN_JOB_PREFIX}{flow_run_id}"


# Prefect global concurrency limits shared by every run on every worker (ftprep.remote.slot)
OPENAI_CONCURRENCY_LIMIT = "ftprep-openai"  # OpenAI requests in flight at once (FTPREP_OPENAI_CONCURRENCY)
OPENAI_RATE_LIMIT = "ftprep-openai-rpm"  # OpenAI requests per minute (FTPREP_OPENAI_RPM)

# Shared result storage (FTPREP_RESULT_STORAGE): one saved Prefect block per URL, so every machine that sets the same
# URL names the same block (ftprep.results)
RESULT_STORAGE_BLOCK_PREFIX = "ftprep-results-"


def result_storage_block(url: str) -> str:
    """The name of the Prefect block (type remote-file-system) that stores results and cache records at ``url``."""
    import hashlib

    return RESULT_STORAGE_BLOCK_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:12]


# Artifact keys (stable, so the UI shows each one's history across runs)
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


def artifact_openai_file(role: str) -> str:
    return f"ftprep-openai-{role}"


# Output files (the names the course writes)
FILE_NAMES = {"train": "fine_tune_train.jsonl", "validation": "fine_tune_validation.jsonl"}
MANIFEST = "manifest.json"
CHART_TOKENS = "tokens.png"  # tokens per example, committed with the files
CHART_TARGETS = "targets.png"  # the template's target values (e.g. prices)
COMPARISON = "comparison.json"  # evaluate: every model's metrics
COMPARISON_CHART = "comparison.png"

DASHBOARD_FILE_URL = "https://platform.openai.com/storage/files/{id}"
