"""Cache policies whose keys come from content, never from a path alone, so every machine computes the same key."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect.cache_policies import TASK_SOURCE, CachePolicy, Inputs
from prefect.utilities.hashing import hash_objects

from ftprep import storage
from ftprep.errors import InputError


def content_of(value: Any) -> Any:
    """``value`` as its content: a pydantic model without its location fields (the names in its class attribute
    ``LOCATION_FIELDS``, such as where a dataset was read from on this machine), recursively."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        skip = getattr(type(value), "LOCATION_FIELDS", ())
        return {"__model__": type(value).__name__,
                **{name: content_of(getattr(value, name)) for name in type(value).model_fields if name not in skip}}
    if isinstance(value, (list, tuple)):
        return [content_of(v) for v in value]
    if isinstance(value, dict):
        return {k: content_of(v) for k, v in value.items()}
    return value


@dataclass
class ContentInputs(CachePolicy):
    """Prefect's INPUTS, hashed by content (:func:`content_of`): a dataset read from another folder or machine, with
    the same bytes, gives the same key. Not a subclass of Prefect's ``Inputs``, which a compound policy would
    replace by a plain one; leave inputs out with ``exclude`` (``content_cache(exclude=...)``), not with ``-``."""

    exclude: list[str] = field(default_factory=list)

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs) -> str | None:
        inputs = {k: content_of(v) for k, v in (inputs or {}).items() if k not in self.exclude}
        return Inputs().compute_key(task_ctx, inputs, flow_parameters, **kwargs)


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
        from ftprep.tokens import estimate_reason

        return hash_objects({"estimated": estimate_reason(model_spec(inputs[self.param]).encoding) is not None})


def content_cache(modules: list[str], exclude: tuple[str, ...] = ("store", "settings", "client", "project"),
                  files: tuple[str, ...] = ()) -> CachePolicy:
    """A task's cache policy: its inputs by content (without the handed-in store, settings and client, which are
    not content, nor the project, which only names where the task's artifacts go; the parameters in ``files`` name
    files, which count by their sha256, not their path), its own source and the source of ``modules``."""
    policy = ContentInputs(exclude=[*exclude, *files]) + TASK_SOURCE + CodeVersion(modules=list(modules))
    return policy + FileContent(params=list(files)) if files else policy
