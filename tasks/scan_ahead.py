"""Validation of a training file while it is written: the validation process checks each part as it is done.

At 400,000 examples the writer keeps one core busy for about 1.5 s while the other is nearly idle, and validation
then keeps both busy for about 2 s. So the command tells its validation process (:mod:`tasks.scan_child`) when it
opens a large training file (the validation file of the pair is written first, and checked then), and each time
another stretch of whole lines is written; the process checks those parts on its workers meanwhile, at the helpers'
lower priority. The validate step's scan of the same file (:func:`tasks.validation_scan.scan_file`) takes them
over and checks only the rest, if it is the same file (the same inode, the size and modification time the writer
left) scanned with the same settings; otherwise it scans the whole file, as it always did.

The report is the same as a whole file's scan: the parts are merged in order as in any scan, and the token sample
is drawn by the same digests. The parts count a sample a quarter larger than the one the writer's example count
implies, cut to the scan's own (from the finished file's size) at the end; a file that needs a larger sample than
was counted is scanned again in full.

Linux only: the workers read the file through ``/proc/self/fd``, which follows it when its folder is renamed (the
output's stage becomes a generation, :mod:`ftprep.outputs`) before the scan takes the parts over.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from tasks.token_stats import ALL, sample_cut
from tasks.validation_scan import PART_BYTES, FileScan, Job, Merger, Part, check_range, scan_file, serve_worker

AHEAD_MIN_EXAMPLES = 50_000  # a smaller training file is written in a fraction of a second: checked afterwards
MARGIN = 1.25  # the sample counted ahead, against the one the writer's count implies

Settings = tuple[str, int, bool, bool]  # (encoding, per-example limit, exact_tokens, raw_digest)


def supported() -> bool:
    return sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd")


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _same(path: Path | str, identity: tuple[int, int, int, int] | None) -> bool:
    try:
        return identity is not None and _identity(os.stat(path)) == identity
    except OSError:
        return False


class Ahead:
    """The parts of one training file checked while it is written; taken over by the scan of the same file."""

    def __init__(self, path: str, validation: str | None, expected: int, settings: Settings, workers: int,
                 part_bytes: int = PART_BYTES) -> None:
        encoding, limit, exact_tokens, raw_digest = self.settings = settings
        self.path = path  # the notes say which file they are about
        self.against: FileScan | None = None
        self._against_id = None
        if validation is not None:  # written whole already: checked now, its digests handed to the workers
            self._against_id = _identity(os.stat(validation))  # before: a change meanwhile shows at the end
            self.against = scan_file(validation, "validation", encoding, limit, 1, exact_tokens, raw_digest,
                                     keep_lines=True, progress=False)  # no bar: the writer's is on the terminal
        self._fd = os.open(path, os.O_RDONLY)
        self._cut = sample_cut(expected / MARGIN, exact_tokens)
        job = Job.of(f"/proc/self/fd/{self._fd}", encoding, limit, self._cut, raw_digest, False, self.against,
                     keyed=True)
        try:  # forked from here with the file open: the workers share the loaded encoding, the job and the descriptor
            self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
                max(1, workers), mp_context=multiprocessing.get_context("fork"), initializer=serve_worker,
                initargs=(job, os.getpid()))
        except BaseException:
            os.close(self._fd)
            raise
        self._futures: list[Future[Part]] = []  # submitted, not yet merged: in file order
        self._submitted = self._written = 0
        self._mtime_ns = 0
        self._part_bytes = part_bytes
        # the parts done are merged as they come (their results are not held), their sample counts kept aside with
        # their keys until the scan's own cut is known
        self._merger = Merger(FileScan(path, "train", ahead=0), False)
        self._counted: list[tuple[int, int, bool]] = []  # (sample key, tokens, an estimate) in file order

    def more(self, written: int, mtime_ns: int) -> None:
        """The writer has written ``written`` bytes of the file so far, ending with a whole line, and the file's
        modification time was then ``mtime_ns`` (a change after the writer's last note shows at the end)."""
        if self._pool is None:
            return
        self._written, self._mtime_ns = written, mtime_ns
        if written - self._submitted >= self._part_bytes:
            self._submit(written)
            self._merger.scan.ahead += 1
        while self._futures and self._futures[0].done():
            self._merger.add(self._aside(self._futures.pop(0).result()))

    def _aside(self, part: Part) -> Part:
        """The part with its sample counts moved aside (they are cut to the scan's sample at the end)."""
        self._counted += zip(part.keys, part.tokens, part.estimates, strict=True)
        part.tokens, part.estimated = [], 0
        return part

    def _submit(self, end: int) -> None:
        assert self._pool is not None
        self._futures.append(self._pool.submit(check_range, (self._submitted, end)))
        self._submitted = end

    def validation(self, path: Path | str, settings: Settings) -> FileScan | None:
        """The scan of the pair's validation file made at the start, if ``path`` is still that file."""
        if self.against is not None and settings == self.settings and _same(path, self._against_id):
            self.against.path = path  # its name now (the stage it was written in became a generation)
            return self.against
        return None

    def take(self, path: Path | str, role: str, settings: Settings, against: FileScan | None, cut: int,
             size: int) -> tuple[Merger, Iterator[Part]] | None:
        """If this is the file written and the scan is made as this one was: (the merger of the parts done, whose
        scan is the file's, the rest of its parts in order; when they are merged, the scan's sample is the one of
        the cut ``cut``). Else None, and the work ahead is dropped."""
        if self._pool is None:
            return None
        try:
            st = os.fstat(self._fd)
            same = (_identity(st) == _identity(os.stat(path)) and size == self._written == st.st_size
                    and st.st_mtime_ns == self._mtime_ns)
        except OSError:
            same = False
        if not (same and role == "train" and settings == self.settings and against is self.against
                and (cut <= self._cut or self._cut >= ALL)):
            self.close(wait=True)  # its workers gone before the scan forks its own
            return None
        if size > self._submitted:
            self._submit(size)
        self._merger.scan.path = path
        return self._merger, self._rest(cut)

    def _rest(self, cut: int) -> Iterator[Part]:
        while self._futures:
            yield self._aside(self._futures.pop(0).result())
        scan = self._merger.scan
        kept = [(tokens, estimate) for key, tokens, estimate in self._counted if cut >= ALL or key < cut]
        scan.tokens, scan.estimated = [tokens for tokens, _ in kept], sum(1 for _, estimate in kept if estimate)

    def close(self, wait: bool = False) -> None:
        """Stop the workers (parts not started are dropped; ``wait``: for them to leave), close the file, and let
        go of what was merged (a scan that took it over holds it)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                pool.shutdown(wait=wait, cancel_futures=True)
            finally:
                os.close(self._fd)
                self._futures, self._counted, self.against = [], [], None
                self._merger = Merger(FileScan(self.path, "train"), False)
