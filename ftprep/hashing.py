"""Content hashes of files, streamed and remembered per (path, size, mtime, inode) within a process."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    st = os.stat(path)
    return _sha256(os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
