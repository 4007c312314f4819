"""Files on disk, done one way: content hashes (streamed) and atomic writes that follow the umask."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
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


AHEAD_CHUNK = 8 << 20  # what sha256_file reads per step: each step takes the GIL once, so a dataset hashed on a
# thread while the main thread works (hash_ahead) takes 0.42 s for 393 MB in 8 MiB steps, 0.91 s in 1 MiB ones


def file_digests(path: str | os.PathLike, md5: bool = False, chunk: int = CHUNK) -> tuple[str, str | None]:
    """sha256 (and md5 if asked) of a file, read ``chunk`` bytes at a time."""
    sha, m5 = hashlib.sha256(), hashlib.md5() if md5 else None
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            sha.update(view[:n])
            if m5 is not None:
                m5.update(view[:n])
    return sha.hexdigest(), m5.hexdigest() if m5 is not None else None


_DIGESTS: dict[tuple[str, int, int, int], Future[str]] = {}  # (path, size, mtime, inode) -> its sha256
_DIGESTS_LOCK = threading.Lock()


def sha256_file(path: str | os.PathLike) -> str:
    """The file's sha256, remembered per (path, size, mtime, inode) within a process; a file being hashed already
    (:func:`hash_ahead`) is waited for, not read twice."""
    st = os.stat(path)
    key = (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _DIGESTS_LOCK:
        digest = _DIGESTS.get(key)
        mine = digest is None
        if mine:
            if len(_DIGESTS) >= 64:
                _DIGESTS.pop(next(iter(_DIGESTS)))
            digest = _DIGESTS[key] = Future()
    if mine:
        try:
            digest.set_result(file_digests(path, chunk=AHEAD_CHUNK)[0])
        except BaseException as e:
            with _DIGESTS_LOCK:
                _DIGESTS.pop(key, None)  # not remembered: the next call tries again
            digest.set_exception(e)
    return digest.result()


def hash_ahead(path: str | os.PathLike) -> None:
    """Start hashing the file on a background thread (reading and hashing release the GIL), so that the
    :func:`sha256_file` a cache key needs later finds it done; a failure here is left for that call to report."""

    def run() -> None:
        try:
            sha256_file(path)
        except BaseException:  # noqa: BLE001,S110 - the caller's own sha256_file reports it
            pass

    threading.Thread(target=run, name="ftprep-hash-ahead", daemon=True).start()


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


# ---------------------------------------------------------------------- temporary files a process owns
def owned_temp(prefix: str, suffix: str = "") -> tuple[int, str]:
    """A new temporary file that this process holds an exclusive lock on while the returned descriptor is open;
    (descriptor, path). Close the descriptor and remove the file when done.

    First removes the files of the same ``prefix`` that no process holds any more: those of a process that was
    killed before it could remove its own (a dataset copy can be gigabytes)."""
    import fcntl
    import time

    folder = Path(tempfile.gettempdir())
    for orphan in folder.glob(f"{prefix}*"):
        try:
            if time.time() - orphan.stat().st_mtime < 60:  # just made: its owner may not have locked it yet
                continue
            fd = os.open(orphan, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it: its process has gone
            orphan.unlink(missing_ok=True)
        except OSError:
            pass  # held: in use by a running process
        finally:
            os.close(fd)
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, path
