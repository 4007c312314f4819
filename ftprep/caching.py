"""Cache policies whose keys come from content, never from a path alone."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.utilities.hashing import hash_objects

from ftprep import storage
from ftprep.errors import InputError


@dataclass
class FileContent(CachePolicy):
    """Key part: the sha256 of the files named by the given path parameters."""

    params: list[str] = field(default_factory=list)

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs) -> str | None:
        parts = {}
        for name in self.params:
            value = inputs.get(name)
            if value is None:
                parts[name] = None
                continue
            try:  # a path or a URL: the content's hash, streamed (never the location)
                parts[name] = storage.sha256(value)
            except (OSError, ValueError, InputError):  # the task itself then says what is wrong, in one line
                parts[name] = f"missing:{value}"
        return hash_objects(parts)


@lru_cache(maxsize=64)
def _module_digest(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return f"missing:{module}"
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()


@dataclass
class CodeVersion(CachePolicy):
    """Key part: the source of whole modules, so a change to a helper a task calls (not only the task's own
    function, which is all TASK_SOURCE sees) makes earlier cached results stale."""

    modules: list[str] = field(default_factory=list)

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs) -> str | None:
        return hash_objects({m: _module_digest(m) for m in self.modules})


@dataclass
class TokenCounting(CachePolicy):
    """Key part: whether token counts for the model in ``param`` are exact (tiktoken loaded) or estimates."""

    param: str = "model"

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs) -> str | None:
        from ftprep.openai_models import model_spec
        from ftprep.tokens import text_counter

        return hash_objects({"estimated": text_counter(model_spec(inputs[self.param]).encoding)[1] is not None})


def content_cache(modules: list[str],
                  exclude: tuple[str, ...] = ("store", "settings", "client", "project")) -> CachePolicy:
    """A task's cache policy: its inputs (without the handed-in store, settings and client, which are not
    content, nor the project, which only names where the task's artifacts go), its own source and the source of
    ``modules``."""
    policy = INPUTS
    for name in exclude:
        policy = policy - name
    return policy + TASK_SOURCE + CodeVersion(modules=list(modules))
