"""The pipeline's steps, one module each: pure functions first, then a thin Prefect task."""

from typing import Any

# The modules whose code decides what the pipeline writes and reports: a change to any of them makes the
# cached results of every pipeline step stale.
PIPELINE_MODULES = ["tasks.load", "tasks.streamed", "tasks.split", "tasks.format", "tasks.field_values",
                    "tasks.write", "tasks.validate", "tasks.validation_checks", "tasks.validation_line",
                    "tasks.validation_scan", "tasks.token_stats",
                    "ftprep.models", "ftprep.tokens", "ftprep.openai_models", "ftprep.numeric"]


def __getattr__(name: str) -> Any:
    """``PIPELINE_CACHE``, made when a task module first asks for it: the pure functions' modules (what the
    validation process imports, :mod:`tasks.scan_child`) then load without Prefect."""
    if name == "PIPELINE_CACHE":
        from ftprep.caching import content_cache

        global PIPELINE_CACHE
        PIPELINE_CACHE = content_cache(PIPELINE_MODULES)
        return PIPELINE_CACHE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
