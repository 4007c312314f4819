"""Cache policies whose keys come from content, never from a path alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.utilities.hashing import hash_objects

from ftprep.hashing import sha256_file


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
            path = Path(value)
            parts[name] = sha256_file(path) if path.is_file() else f"missing:{path}"
        return hash_objects(parts)
