"""Write: stream every selected record through the template into JSONL files, atomically.

Pure part: :func:`write_jsonl` renders and writes one slice, hashing as it goes; :func:`write_split` writes
both files into a new generation of the output folder (:mod:`ftprep.outputs`), which the publish step commits
only after validation and upload, so a failure leaves the previous output as it was. Nothing holds more than
one chunk of output in memory.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from ftprep import outputs, storage
from ftprep.errors import InputError
from ftprep.fsio import disk_error, is_disk_error
from ftprep.models import FormatPlan, Slice, SplitPlan, WrittenFile, WrittenFiles
from ftprep.names import ARTIFACT_WRITE_PROGRESS, DEFAULT_PROJECT, FILE_NAMES, artifact_key
from ftprep.pause import pause_point
from ftprep.progress import bar
from ftprep.records import RecordStore, project, take
from ftprep.steps import task
from tasks import PIPELINE_CACHE, scan_child
from tasks.format import Renderer, compile_template, record_fields
from tasks.split import slice_indices

CHUNK_LINES = 2000
PROGRESS_AFTER = 2.0  # seconds of writing before the write-progress artifact appears

Progress = Callable[[str, int, int], None]
Written = Callable[[int, int], None]  # (bytes written so far, the file's modification time in ns)
Announce = Callable[[Path | str, Path | str | None, int], Written | None]  # (training file, validation file, examples)


class _Sink:
    """Hashes and writes chunks on a second thread (both release the GIL) while the caller renders; tells
    ``written`` (if given) the bytes written so far after each chunk, and the file's modification time then."""

    def __init__(self, f, written: Written | None = None) -> None:
        self.digest, self.size, self._f, self._error = hashlib.sha256(), 0, f, None
        self._written = written
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)  # bounds memory to a few chunks
        self._thread = threading.Thread(target=self._run, name="ftprep-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.digest.update(chunk)
                    self._f.write(chunk)
                    self.size += len(chunk)
                    if self._written is not None:
                        self._written(self.size, os.fstat(self._f.fileno()).st_mtime_ns)
                except BaseException as e:  # noqa: BLE001 - handed to the caller in close()
                    self._error = e

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def write_jsonl(
    target: Path | str,
    records: Sequence[Mapping[str, Any]],
    indices: Sequence[int],
    render: Renderer,
    progress: Progress | None = None,
    role: str = "train",
    ahead: Callable[[], Written | None] | None = None,
) -> tuple[str, int]:
    """Write the rendered line of ``records[i]`` for each i to ``target`` (a file in a stage folder).

    ``ahead``: called once the file is open; what it returns is told the bytes written so far, in whole lines,
    and the file's modification time, after each chunk (the validation process checks the file meanwhile,
    :mod:`tasks.scan_ahead`).
    Returns (sha256, bytes).
    """
    with storage.open_write(target) as f:  # unbuffered on disk: what is written is there for a reader
        sink = _Sink(f, ahead() if ahead is not None else None)
        try:
            total = len(indices)
            for start in range(0, total, CHUNK_LINES):
                chunk = indices[start : start + CHUNK_LINES]
                sink.put(render.chunk(take(records, chunk), chunk))  # a file-backed dataset reads a chunk at once
                if progress:
                    progress(role, min(start + CHUNK_LINES, total), total)
        finally:
            sink.close()
    return sink.digest.hexdigest(), sink.size


def check_out_dir(out_dir: Path | str) -> None:
    if storage.is_url(out_dir):
        storage.check_out(str(out_dir))
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"output folder {out_dir} cannot be created ({e.strerror}); choose another --out") from None
    if not out_dir.is_dir():
        raise InputError(f"output folder {out_dir} is not a folder; choose another --out")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise InputError(f"output folder {out_dir} is not writable; choose another --out or fix its permissions")


def write_split(plan: SplitPlan, fmt: FormatPlan, out_dir: Path | str, store: RecordStore,
                progress: Progress | None = None, ahead: Announce | None = None) -> WrittenFiles:
    """Write both files into a new generation of ``out_dir`` (see :mod:`ftprep.outputs`); nothing is committed.

    The previous output stays current until the publish step commits this generation; leftovers of killed
    runs are removed first. The validation file is written first; ``ahead`` (:func:`tasks.scan_child.ahead`) is
    told when the training file is open (its path, the validation file's, its examples), so that its parts can be
    checked while the rest is written.
    """
    out_dir = storage.normalize(out_dir, "--out")
    if not storage.is_url(out_dir):
        out_dir = Path(out_dir)
    check_out_dir(out_dir)
    outputs.clean(out_dir)
    render = compile_template(fmt.template)
    slices: dict[str, Slice] = {}
    if plan.validation is not None:  # first: checking the training file as it is written needs its digests
        slices["validation"] = plan.validation
    slices["train"] = plan.train
    stage = outputs.new_stage(out_dir)
    targets = {role: storage.join(stage, FILE_NAMES[role]) for role in slices}
    try:
        digests = {}
        for role, s in slices.items():
            records = project(store.read(s.dataset.path, s.dataset.sha256), record_fields(fmt.template))
            told = partial(ahead, targets["train"], targets.get("validation"), s.count) \
                if ahead is not None and role == "train" else None
            digests[role] = write_jsonl(targets[role], records, slice_indices(s), render, progress, role, told)
            pause_point("write")  # tests: killed between the two files
        generation = outputs.seal(stage, [digests[role][0] for role in ("train", "validation") if role in digests])
    except BaseException as e:
        outputs.abandon(stage)
        if is_disk_error(e):  # a full disk (ENOSPC) or the like: one line, nothing left behind
            raise disk_error(e, out_dir) from None
        raise
    written = {}
    for role, (sha, size) in digests.items():
        path = storage.join(generation, FILE_NAMES[role])
        written[role] = WrittenFile(role=role, path=path, sha256=sha, bytes=size,
                                    examples=slices[role].count, mtime_ns=storage.info(path)["mtime_ns"])
    return WrittenFiles(train=written["train"], validation=written.get("validation"), out_dir=str(out_dir))


def files_intact(files: WrittenFiles) -> bool:
    """Are the files still as written, and in use by this run? (size and modification time: cheap enough to ask
    on every run; a cached write's generation is claimed so that no other run's clean-up removes it)"""
    try:
        if not outputs.claim(storage.parent(files.train.path)):
            return False
        for f in files.files():
            found = storage.info(f.path)
            if found["size"] != f.bytes or found["mtime_ns"] != f.mtime_ns:
                return False
    except (OSError, ValueError):
        return False
    return True


@task(name="write", cache_policy=PIPELINE_CACHE, persist_result=True)
def write_files(plan: SplitPlan, fmt: FormatPlan, out_dir: str, store: RecordStore,
                project: str = DEFAULT_PROJECT) -> WrittenFiles:
    """Stream the training and validation examples into JSONL files (temporary file, then rename); a write that
    lasts more than PROGRESS_AFTER seconds shows its progress in the project's artifact (``project`` is no part
    of the cache key). The everyday write is over in a fraction of a second, and spends no API calls on it."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    logger = get_run_logger()
    started = time.perf_counter()
    total = plan.train.count + (plan.validation.count if plan.validation else 0)
    offsets = {"validation": 0, "train": plan.validation.count if plan.validation else 0}  # in the order written
    artifact: list[Any] = []  # made by the first report after PROGRESS_AFTER seconds
    last = [started]

    with bar("writing examples", total) as show:

        def progress(role: str, done: int, role_total: int) -> None:
            written = offsets[role] + done  # of all files
            show(written)
            now = time.perf_counter()
            if done == role_total or now - last[0] >= 5:  # a log line every 5 s at most
                last[0] = now
                logger.info("Writing %s examples: %s of %s; all files: %s of %s (%.0f%%)", role, f"{done:,}",
                            f"{role_total:,}", f"{written:,}", f"{total:,}", 100 * written / total)
                if artifact:
                    update_progress_artifact(artifact[0], 100 * written / total)
            if not artifact and now - started >= PROGRESS_AFTER:
                artifact.append(create_progress_artifact(
                    100 * written / total, key=artifact_key(ARTIFACT_WRITE_PROGRESS, project),
                    description=f"Formatting and writing {total:,} examples"))

        try:  # the validation process checks the training file as it is written, if the command started one
            files = write_split(plan, fmt, out_dir, store, progress, scan_child.ahead)
        except BaseException:
            scan_child.drop_ahead()
            raise
    if artifact:
        update_progress_artifact(artifact[0], 100.0)
    for f in files.files():
        logger.info("Wrote %s: %s examples, %.1f MB, sha256 %s", f.path, f"{f.examples:,}", f.bytes / 1e6, f.sha256)
    logger.info("Formatted and wrote %s examples in %.2f s", f"{total:,}", time.perf_counter() - started)
    return files
