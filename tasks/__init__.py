"""The pipeline's steps, one module each: pure functions first, then a thin Prefect task."""

from ftprep.caching import content_cache

# The modules whose code decides what the pipeline writes and reports: a change to any of them makes the
# cached results of every pipeline step stale.
PIPELINE_MODULES = ["tasks.load", "tasks.streamed", "tasks.split", "tasks.format", "tasks.field_values",
                    "tasks.write", "tasks.validate", "tasks.validation_checks", "tasks.validation_line",
                    "tasks.validation_scan", "tasks.token_stats",
                    "ftprep.models", "ftprep.tokens", "ftprep.openai_models", "ftprep.numeric"]
PIPELINE_CACHE = content_cache(PIPELINE_MODULES)
