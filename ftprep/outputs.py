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
the process dies); the next run removes every unlocked folder that is not ``current``.

On object storage (``--out s3://bucket/prefix``), where there are no renames or links, the same design holds
with ``out/manifest.json`` as the commit point::

    out/manifest.json                the commit point: names the current generation's files (one PUT)
    out/.ftprep/gen-<hash>/          the files, pictures and a copy of the manifest of one generation
    out/.ftprep/tmp-<random>/        a generation being written

A run streams its files into a ``tmp-`` prefix, copies them (server-side) to ``gen-<hash>`` and removes the
stage, validates and uploads from there, and only then writes ``out/manifest.json`` in one PUT. Readers follow
the manifest (its ``files.train.path``); a run killed at any point leaves the previous manifest and the files it
names untouched. There are no locks on a store, so clean-up is conservative: a prefix is removed only when the
manifest does not name it, this process is not using it, and nothing in it changed for
:data:`STALE_SECONDS` (a run that reuses a cached generation touches ``.in-use`` in it first).
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

from ftprep import storage
from ftprep.errors import InputError
from ftprep.fsio import atomic_write
from ftprep.names import CHART_TARGETS, CHART_TOKENS, FILE_NAMES, MANIFEST
from ftprep.pause import pause_point

STATE = ".ftprep"
CURRENT = "current"
_LOCK = ".lock"
_IN_USE = ".in-use"
STALE_SECONDS = 24 * 3600  # on a store: an unnamed generation is removed only when untouched this long

_held: dict[str, int] = {}  # folder -> open fd holding its flock, for as long as this process uses it
_held_lock = threading.Lock()
_mine: set[str] = set()  # store prefixes (stages, generations) this process is using


def state_dir(out: Path | str) -> Path | str:
    return storage.join(out, STATE) if storage.is_url(out) else Path(out) / STATE


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


def release(folder: Path | str) -> None:
    if storage.is_url(folder):
        with _held_lock:
            _mine.discard(str(folder))
        return
    with _held_lock:
        fd = _held.pop(str(folder), None)
    if fd is not None:
        os.close(fd)


def new_stage(out: Path | str) -> Path | str:
    """A fresh ``tmp-`` folder (a prefix on a store), in use by this process, to write a generation into."""
    if storage.is_url(out):
        stage = storage.join(out, STATE, f"tmp-{uuid.uuid4().hex[:16]}")
        with _held_lock:
            _mine.add(stage)
        return stage
    state = state_dir(out)
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"output folder {out} cannot be written ({e.strerror}); choose another --out") from None
    stage = state / f"tmp-{uuid.uuid4().hex[:16]}"
    stage.mkdir()
    _use(stage)
    return stage


def seal(stage: Path | str, digests: Iterable[str]) -> Path | str:
    """Rename a complete stage to its content-addressed ``gen-`` folder (or refill an existing one); in use."""
    if storage.is_url(stage):
        return _seal_remote(str(stage), digests)
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


def abandon(stage: Path | str) -> None:
    """Remove a stage that will not be sealed (a failed write)."""
    if storage.is_url(stage):
        storage.remove_tree(str(stage))
    else:
        shutil.rmtree(stage, ignore_errors=True)
    release(stage)


def claim(generation: Path | str) -> bool:
    """Mark an existing generation as in use by this run (a cached write reuses it); False if it is gone."""
    if storage.is_url(generation):
        return _claim_remote(str(generation))
    return _use(Path(generation))


def current(out: Path | str) -> Path | str | None:
    if storage.is_url(out):
        return _current_remote(str(out))
    link = state_dir(out) / CURRENT
    try:
        return state_dir(out) / os.readlink(link)
    except OSError:
        return None


def _swap_link(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def commit(out: Path | str, generation: Path | str, manifest: str) -> Path | str:
    """Write the manifest into ``generation`` and make it current in one atomic step; return the manifest path.

    The fixed links in ``out/`` point through ``.ftprep/current``, so they are made before the swap: a folder
    still holding the plain files of an older ftprep then shows, for a moment, no file rather than a pair mixed
    across two runs. Links to files the new generation lacks (no validation file) go after the swap.
    """
    if storage.is_url(out):
        return _commit_remote(str(out), str(generation), manifest)
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


def clean(out: Path | str, older_than: float = STALE_SECONDS) -> list[str]:
    """Remove the folders of earlier runs that are neither current nor in use by a live process (on a store:
    nor touched in the last ``older_than`` seconds)."""
    if storage.is_url(out):
        return _clean_remote(str(out), older_than)
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


# ------------------------------------------------------------------------------------- object storage
def _seal_remote(stage: str, digests: Iterable[str]) -> str:
    """Copy a complete stage to its ``gen-`` prefix (server-side; a re-run's copy repairs an edited one)."""
    target = storage.join(storage.parent(stage), generation_name(digests))
    with _held_lock:
        _mine.add(target)
    for entry in storage.listdir(stage):
        storage.copy(entry["name"], storage.join(target, storage.name(entry["name"])))
    abandon(stage)
    return target


def _claim_remote(generation: str) -> bool:
    if not storage.exists(storage.join(generation, FILE_NAMES["train"])):
        return False
    storage.write_bytes(storage.join(generation, _IN_USE), f"{uuid.uuid4().hex}\n")  # fresh: no clean-up takes it
    with _held_lock:
        _mine.add(generation)
    return True


def _current_remote(out: str) -> str | None:
    """The generation the manifest names (the parent of its training file), or None when there is no manifest.
    Raises when the store cannot say (no answer, no access) or the manifest names no files: then nothing is
    cleaned."""
    import json

    target = storage.join(out, MANIFEST)
    if storage.problem(target) == "does not exist":
        return None
    manifest = json.loads(storage.read_bytes(target))
    return storage.parent(manifest["files"]["train"]["path"])


def _commit_remote(out: str, generation: str, manifest: str) -> str:
    storage.write_bytes(storage.join(generation, MANIFEST), manifest)  # the generation's own copy
    pause_point("commit")
    target = storage.join(out, MANIFEST)
    storage.write_bytes(target, manifest)  # the commit: one PUT, after everything it names exists
    release(generation)
    return target


def _clean_remote(out: str, older_than: float) -> list[str]:
    import time

    try:
        keep = _current_remote(out)
    except (InputError, OSError, ValueError, KeyError, TypeError):
        return []  # the manifest cannot be read: every generation may be the current one
    cutoff = time.time_ns() - int(older_than * 1e9)
    removed = []
    for entry in storage.listdir(state_dir(out)):
        folder = entry["name"].rstrip("/")
        if entry["type"] != "directory" or not storage.name(folder).startswith(("tmp-", "gen-")):
            continue
        if folder == keep or folder in _mine or storage.newest(folder) > cutoff:
            continue
        storage.remove_tree(folder)
        removed.append(storage.name(folder))
    return removed
