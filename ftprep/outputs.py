"""The output folder as a transaction: content-addressed generations, committed by one atomic pointer swap.

Layout of ``out/``::

    out/fine_tune_train.jsonl       -> .ftprep/current/fine_tune_train.jsonl      (fixed links)
    out/fine_tune_validation.jsonl  -> .ftprep/current/fine_tune_validation.jsonl
    out/manifest.json               -> .ftprep/current/manifest.json
    out/.ftprep/current             -> gen-<hash of the pair>                      (the one commit point)
    out/.ftprep/gen-<hash>/         the files and manifest of one generation
    out/.ftprep/tmp-<random>/       a generation being written

A run writes its files into a new ``tmp-`` folder, renames it to ``gen-<hash>`` (the hash of the pair's
content), validates and uploads from there, writes the manifest into it, and only then swaps ``current`` to it
with one ``rename``: a run that fails or is killed at any point leaves the previous generation, its manifest and
the links exactly as they were. A folder in use by a live run is locked (``flock``, released by the kernel when
the process dies); the next run removes every unlocked folder that is not ``current``. On object storage, where
renames are not atomic, the same design holds with the manifest as the commit point (issue 14).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

from ftprep.errors import InputError
from ftprep.fsio import atomic_write
from ftprep.names import CHART_TARGETS, CHART_TOKENS, FILE_NAMES, MANIFEST
from ftprep.pause import pause_point

STATE = ".ftprep"
CURRENT = "current"
_LOCK = ".lock"

_held: dict[str, int] = {}  # folder -> open fd holding its flock, for as long as this process uses it
_held_lock = threading.Lock()


def state_dir(out: Path) -> Path:
    return Path(out) / STATE


def generation_name(digests: Iterable[str]) -> str:
    return "gen-" + hashlib.sha256("\n".join(digests).encode()).hexdigest()[:24]


def _use(folder: Path) -> bool:
    """Mark ``folder`` as in use by this process (a shared lock, kept until :func:`release`); False if gone."""
    key = str(folder)
    with _held_lock:
        if key in _held:
            return True
        try:
            fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except (FileNotFoundError, NotADirectoryError):
            return False
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a cleaner holds it, i.e. for a removal
        if not folder.is_dir():
            os.close(fd)
            return False
        _held[key] = fd
        return True


def _unused(folder: Path) -> int | None:
    """An fd holding the exclusive lock of ``folder`` when no live process uses it, else None."""
    try:
        fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release(folder: Path) -> None:
    with _held_lock:
        fd = _held.pop(str(folder), None)
    if fd is not None:
        os.close(fd)


def new_stage(out: Path) -> Path:
    """A fresh ``tmp-`` folder, in use by this process, to write a generation into."""
    state = state_dir(out)
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"output folder {out} cannot be written ({e.strerror}); choose another --out") from None
    stage = state / f"tmp-{uuid.uuid4().hex[:16]}"
    stage.mkdir()
    _use(stage)
    return stage


def seal(stage: Path, digests: Iterable[str]) -> Path:
    """Rename a complete stage to its content-addressed ``gen-`` folder (or refill an existing one); in use."""
    target = stage.parent / generation_name(digests)
    if not _use(target):  # new content: the stage becomes the generation
        try:
            os.rename(stage, target)
        except OSError:
            if not _use(target):  # a concurrent run sealed the same content first
                raise
        else:
            with _held_lock:
                fd = _held.pop(str(stage))  # the lock file moved with the folder: keep holding it
                _held[str(target)] = fd
            return target
    # The same content was sealed before (a re-run, or a concurrent run): put this run's files in its place,
    # one atomic rename each, so a generation whose files were edited by hand is repaired, not trusted.
    for path in stage.iterdir():
        if path.name != _LOCK:
            os.replace(path, target / path.name)
    shutil.rmtree(stage, ignore_errors=True)
    release(stage)
    return target


def claim(generation: Path) -> bool:
    """Mark an existing generation as in use by this run (a cached write reuses it); False if it is gone."""
    return _use(Path(generation))


def current(out: Path) -> Path | None:
    link = state_dir(out) / CURRENT
    try:
        return state_dir(out) / os.readlink(link)
    except OSError:
        return None


def _swap_link(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def commit(out: Path, generation: Path, manifest: str) -> Path:
    """Write the manifest into ``generation`` and make it current in one atomic step; return the manifest path.

    The fixed links in ``out/`` point through ``.ftprep/current``, so they are made before the swap: a folder
    still holding the plain files of an older ftprep then shows, for a moment, no file rather than a pair mixed
    across two runs. Links to files the new generation lacks (no validation file) go after the swap.
    """
    out = Path(out)
    atomic_write(generation / MANIFEST, manifest)
    names = (*FILE_NAMES.values(), MANIFEST, CHART_TOKENS, CHART_TARGETS)
    for name in names:
        link, target = out / name, f"{STATE}/{CURRENT}/{name}"
        if (generation / name).exists() and not (link.is_symlink() and os.readlink(link) == target):
            _swap_link(link, target)
    pause_point("commit")
    _swap_link(state_dir(out) / CURRENT, generation.name)  # the commit
    for name in names:
        link = out / name
        if not (generation / name).exists() and (link.is_symlink() or link.exists()):
            link.unlink()
    release(generation)
    return out / MANIFEST


def clean(out: Path) -> list[str]:
    """Remove the folders of earlier runs that are neither current nor in use by a live process."""
    state = state_dir(out)
    if not state.is_dir():
        return []
    keep = current(out)
    removed = []
    for folder in state.iterdir():
        if not folder.is_dir() or folder.is_symlink() or folder == keep or not folder.name.startswith(("tmp-", "gen-")):
            continue
        if str(folder) in _held or (fd := _unused(folder)) is None:
            continue  # ours, or a live run's
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
        removed.append(folder.name)
    for leftover in state.glob(f".{CURRENT}.*"):  # a pointer swap killed half-way
        leftover.unlink(missing_ok=True)
    return removed
