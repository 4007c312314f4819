"""Files on disk, done one way: content hashes (streamed) and atomic writes that follow the umask."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
# Errors of the disk, not of the program: a full disk or quota, a file too large, a read-only or failing device.
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}


def is_disk_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in _DISK_ERRORS


def disk_error(e: OSError, target: str | os.PathLike) -> Exception:
    """The one-line :class:`~ftprep.errors.InputError` for a disk error (:func:`is_disk_error`) writing ``target``."""
    from ftprep.errors import InputError

    return InputError(f"cannot write {target}: {e.strerror or e} (errno {errno.errorcode.get(e.errno, e.errno)}); "
                      "free some space or choose another --out; nothing was written there")


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a data file ("does not exist", "is a directory", "is a FIFO...",
    "is not readable (...)"), or None. Never blocks: a FIFO is recognised by its type, not opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket or device"
        return f"is {kind}, not a regular file"
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as e:
        return f"is not readable ({e.strerror})"
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_digests(path: str | os.PathLike, md5: bool = False) -> tuple[str, str | None]:
    """sha256 (and md5 if asked) of a file, read in 1 MiB chunks."""
    sha, m5 = hashlib.sha256(), hashlib.md5() if md5 else None
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            sha.update(view[:n])
            if m5 is not None:
                m5.update(view[:n])
    return sha.hexdigest(), m5.hexdigest() if m5 is not None else None


def sha256_file(path: str | os.PathLike) -> str:
    """The file's sha256, remembered per (path, size, mtime, inode) within a process."""
    st = os.stat(path)
    return _sha256(os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    return file_digests(path)[0]


@contextmanager
def staged(target: str | os.PathLike, mode: str = "wb") -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file beside ``target`` (hidden, ``.<name>.*.tmp``), with the umask's permissions.

    Yields (open file, temporary path). On an exception the temporary file is removed; on success it is left
    for the caller to move into place (:func:`commit`) so several files can be committed together.
    """
    target = Path(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        if is_disk_error(e):
            raise disk_error(e, target) from None
        raise
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: follow the umask like any other new file
    path = Path(tmp)
    try:
        with os.fdopen(fd, mode) as f:
            yield f, path
    except OSError as e:  # a full disk (ENOSPC) while writing or flushing: one line, no partial file
        path.unlink(missing_ok=True)
        if is_disk_error(e):
            raise disk_error(e, target) from None
        raise
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def commit(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move a staged file into place atomically (same folder, so ``os.replace`` is one rename)."""
    os.replace(tmp, target)


def atomic_write(target: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``target`` so that a reader sees the old content or the new, never a part."""
    payload = data.encode() if isinstance(data, str) else data
    with staged(target) as (f, tmp):
        f.write(payload)
    try:
        commit(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(target)
