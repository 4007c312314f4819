"""Validate one file: every line checked, in byte ranges spread over the cores, merged in order into a scan.

The file is cut at line ends into parts of about :data:`PART_BYTES`; each worker process reads its parts itself
(nothing but the results crosses between processes), checks every line with
:func:`tasks.validation_line.check_example` and sums them up: codes by line, sampled token counts, and the
example digests. The parent merges the parts in file order, numbering the lines, and finds duplicates over the
whole file. Leakage needs no training index: the validation file is scanned first, and the training file's workers
are handed its digests and report which ones they meet.

Memory: the duplicate check keeps one 16-byte digest per example of a file, in a set (about 90 bytes an
example: 36 MB at 400,000, 165 MB at 2 million); the validation file also keeps its line numbers and its prompts'
digests. Lines themselves are held only one part at a time per worker.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftprep import storage
from ftprep.children import die_with_parent
from ftprep.openai_models import MIN_EXAMPLES
from ftprep.progress import bar
from ftprep.tokens import text_counter
from tasks.token_stats import ALL, SAMPLE, sample_cut
from tasks.validation_line import check_example, digest

PART_BYTES = 4 << 20  # small enough to spread a file over the cores, big enough that its results are few messages
FIRST_LINES = 5_000  # lines read to estimate the number of examples (for the token sample's cut)
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Job:
    """What every part of one file's scan is checked with."""

    path: Path | str
    encoding: str
    limit: int
    cut: int
    raw_digest: bool  # digest line bytes: the file is ftprep's canonical output (see check_example)
    keep_lines: bool  # the validation file of a pair: keep digest -> first line and the prompts, for leakage
    against: frozenset[bytes] = frozenset()  # the validation file's example digests (for the training file)
    against_prompts: frozenset[bytes] = frozenset()  # ... and its prompts' digests
    against_prompt_hashes: frozenset[int] = frozenset()  # ... and their ``hash()``: a cheap first look
    keyed: bool = False  # keep each counted example's sample key: the sample is cut again later (scan_ahead.py)

    @classmethod
    def of(cls, path: Path | str, encoding: str, limit: int, cut: int, raw_digest: bool, keep_lines: bool,
           against: FileScan | None, keyed: bool = False) -> Job:
        """The job of a file's scan; ``against``: the validation file's scan, when this is its training file."""
        return cls(path, encoding, limit, cut, raw_digest, keep_lines,
                   frozenset(against.example_lines) if against else frozenset(),
                   frozenset(against.prompt_lines) if against else frozenset(),
                   frozenset(against.prompt_hashes) if against else frozenset(), keyed)


@dataclass(slots=True)
class Part:
    """The results of one part of a file, line numbers counted from the part's first line (1)."""

    lines: int = 0
    last: int = 0  # the last line that is not blank
    examples: int = 0
    codes: dict[str, list[int]] = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)
    estimated: int = 0
    digests: list[bytes] = field(default_factory=list)
    digest_lines: list[int] = field(default_factory=list)
    prompts: list[tuple[bytes, int]] = field(default_factory=list)  # keep_lines only: (digest, line)
    prompt_hashes: set[int] = field(default_factory=set)  # keep_lines only
    leaked: set[bytes] = field(default_factory=set)  # digests of ``against`` met in this part
    leaked_prompts: set[bytes] = field(default_factory=set)
    keys: list[int] = field(default_factory=list)  # keyed only: the sample key of each count in ``tokens``
    estimates: list[bool] = field(default_factory=list)  # keyed only: ... and whether it is an estimate


@dataclass
class FileScan:
    path: Path | str
    role: str
    examples: int = 0
    tokens: list[int] = field(default_factory=list)
    estimated: int = 0  # examples whose count includes estimated tools or calls
    lines: dict[str, list[int]] = field(default_factory=dict)  # code -> line numbers
    seen: set[bytes] = field(default_factory=set)  # example digests, for duplicates
    example_lines: dict[bytes, int] = field(default_factory=dict)  # keep_lines: digest -> first line
    prompt_lines: dict[bytes, int] = field(default_factory=dict)  # keep_lines: prompt digest -> first line
    prompt_hashes: set[int] = field(default_factory=set)  # keep_lines: the prompts' ``hash()``
    leaked: set[bytes] = field(default_factory=set)  # validation example digests also in this (training) file
    leaked_prompts: set[bytes] = field(default_factory=set)
    sampled: bool = False
    ahead: int = 0  # parts checked while the file was written (tasks/scan_ahead.py)

    def add(self, code: str, lineno: int) -> None:
        self.lines.setdefault(code, []).append(lineno)


# ------------------------------------------------------------------------------------------- one part
def check_part(job: Job, start: int, end: int) -> Part:
    """Check the lines of bytes ``start:end`` of the file (whole lines: both ends are line starts)."""
    with storage.open_read(job.path) as f:
        f.seek(start)
        data = f.read(end - start)
    lines = data.split(b"\n") if data else []
    if data.endswith(b"\n"):
        lines.pop()  # as iterating the file: no empty line after the last newline
    if start == 0 and lines and lines[0].startswith(BOM):
        lines[0] = lines[0][3:]
    count, fallback = text_counter(job.encoding)
    exact = fallback is None
    part = Part(lines=len(lines))
    codes, against, against_prompts, against_hashes = part.codes, job.against, job.against_prompts, \
        job.against_prompt_hashes
    for lineno, raw in enumerate(lines, 1):
        r = check_example(raw.rstrip(b"\r"), lineno, count, job.encoding, exact, job.limit, job.cut, job.raw_digest)
        if r.codes == ["blank_line"]:
            codes.setdefault("blank_line", []).append(lineno)
            continue
        part.last = lineno
        for code in r.codes:
            codes.setdefault(code, []).append(lineno)
        if "not_utf8" in r.codes or "invalid_json" in r.codes or "not_object" in r.codes:
            continue
        part.examples += 1
        if r.tokens is not None and r.sampled:
            part.tokens.append(r.tokens)
            part.estimated += r.estimated
            if job.keyed:
                part.keys.append(int.from_bytes(r.example[:8], "big"))  # type: ignore[index] - sampled: digested
                part.estimates.append(r.estimated)
        if r.upper is not None and r.upper > job.limit:  # the upper bound: an estimate never lets one through
            codes.setdefault("too_many_tokens", []).append(lineno)
        if r.example is not None:
            part.digests.append(r.example)
            part.digest_lines.append(lineno)
            if r.example in against:
                part.leaked.add(r.example)
        if r.prompt is not None:
            if job.keep_lines:
                part.prompts.append((digest(r.prompt.encode()), lineno))
                part.prompt_hashes.add(hash(r.prompt))
            elif hash(r.prompt) in against_hashes:  # the same seed in every worker: forked from one process
                d = digest(r.prompt.encode())  # the digest decides
                if d in against_prompts:
                    part.leaked_prompts.add(d)
    return part


_job: Job | None = None  # in a worker process: the job of the scan it serves


def serve_worker(job: Job, parent: int) -> None:
    global _job
    die_with_parent(parent)  # a worker never outlives the process that forked it, however that one ends
    _job = job


def check_range(bounds: tuple[int, int]) -> Part:
    assert _job is not None
    return check_part(_job, *bounds)


def _ranges(path: Path | str, size: int, part_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges of about ``part_bytes`` covering the file, each ending just after a newline (or at its end)."""
    starts = [0]
    with storage.open_read(path) as f:
        while starts[-1] + part_bytes < size:
            f.seek(starts[-1] + part_bytes)
            f.readline()
            if f.tell() >= size:
                break
            starts.append(f.tell())
    return list(itertools.pairwise([*starts, size]))


# ------------------------------------------------------------------------------------------ one file
def _first_lines(path: Path | str) -> tuple[bool, float]:
    """(starts with a BOM, average bytes per line of the first lines)."""
    with storage.open_read(path) as f:
        lines = [raw.rstrip(b"\r\n") for raw in itertools.islice(f, FIRST_LINES)]
    bom = bool(lines) and lines[0].startswith(BOM)
    if bom:
        lines[0] = lines[0][3:]
    return bom, sum(len(raw) + 1 for raw in lines) / max(len(lines), 1)


def scan_file(path: Path | str, role: str, encoding: str, limit: int, workers: int, exact_tokens: bool = False,
              raw_digest: bool = False, keep_lines: bool = False, against: FileScan | None = None,
              part_bytes: int = PART_BYTES, ahead: Any = None, progress: bool = True) -> FileScan:
    """Check every line of ``path``; ``against``: the validation file's scan, when this is its training file.

    A file of one part is checked in this process; a larger one by up to ``workers`` processes. ``ahead``: a
    :class:`tasks.scan_ahead.Ahead` that may have checked the file's parts already, while it was written.
    ``progress``: draw a progress bar on a terminal (not beside another process's)."""
    bom, average = _first_lines(path)
    size = storage.size(path)
    cut = sample_cut(size / max(average, 1.0), exact_tokens)
    taken = ahead.take(path, role, (encoding, limit, exact_tokens, raw_digest), against, cut, size) \
        if ahead is not None else None
    pool = None
    if taken is not None:  # its scan holds the parts merged so far
        merger, parts = taken
        scan = merger.scan
    else:
        scan = FileScan(path, role)
        merger = Merger(scan, keep_lines)
        job = Job.of(path, encoding, limit, cut, raw_digest, keep_lines, against)
        ranges = _ranges(path, size, part_bytes)
        if workers > 1 and len(ranges) > 1 and not storage.is_url(path):  # a store's client is not fork-safe
            # fork: the workers share the loaded encoding and the job (a set of digests need not be sent each part)
            pool = ProcessPoolExecutor(min(workers, len(ranges)), mp_context=multiprocessing.get_context("fork"),
                                       initializer=serve_worker, initargs=(job, os.getpid()))
        parts = (pool.map(check_range, ranges) if pool is not None else (check_part(job, *r) for r in ranges))
    if bom:
        scan.add("bom", 1)
    try:
        last_line = _merge(merger, parts, int(size / max(average, 1.0)) if progress else 0)
    except BaseException:
        if pool is not None:  # interrupted or failed: the parts being checked are not waited for; the workers end
            pool.shutdown(wait=False, cancel_futures=True)  # after them, or with this process (parent-death signal)
        if taken is not None:
            ahead.close()
        raise
    if pool is not None:
        pool.shutdown(cancel_futures=True)
    if taken is not None:
        ahead.close(wait=True)
    # Blank lines after the last example are harmless; blank lines between examples are not.
    blanks = [n for n in scan.lines.pop("blank_line", []) if n < last_line]
    if blanks:
        scan.lines["blank_line"] = blanks
    if scan.examples < MIN_EXAMPLES:
        scan.add("too_few_examples", 0)
    if cut < ALL and scan.examples <= SAMPLE:  # the size was misjudged: a small file is counted exactly
        return scan_file(path, role, encoding, limit, workers, True, raw_digest, keep_lines, against, part_bytes,
                         progress=progress)
    scan.sampled = cut < ALL
    return scan


def scan_files(files: list[tuple[Path | str, str]], encoding: str, limit: int, workers: int,
               exact_tokens: bool = False, raw_digest: bool = False, ahead: Any = None) -> list[FileScan]:
    """Scan each (path, role) of ``files`` (role "train", "validation" or "file"), in the order given back.

    The validation file of a pair goes first: the training file's workers then look its digests up as they go.
    What only the scans themselves need (the digest sets) is dropped from the results. ``ahead``: see
    :func:`scan_file` (it also holds the scan of the validation file it was told of)."""
    from ftprep.errors import InputError

    pair = {role: i for i, (_, role) in reversed(list(enumerate(files))) if role in ("train", "validation")}
    order = sorted(range(len(files)), key=lambda i: i != pair.get("validation"))
    done: dict[int, FileScan] = {}
    for i in order:
        path, role = files[i]
        keep = i == pair.get("validation") and "train" in pair
        against = done[pair["validation"]] if i == pair.get("train") and "validation" in pair else None
        try:
            done[i] = (ahead.validation(path, (encoding, limit, exact_tokens, raw_digest)) if ahead and keep
                       else None) or scan_file(path, role, encoding, limit, workers, exact_tokens, raw_digest,
                                               keep_lines=keep, against=against, ahead=ahead)
        except OSError as e:  # a read error (EIO, a file removed or made unreadable meanwhile)
            raise InputError(f"{path} cannot be read ({e.strerror or e}); check the file") from None
    for scan in done.values():
        scan.seen, scan.prompt_hashes = set(), set()
    return [done[i] for i in range(len(files))]


class Merger:
    """Adds parts of a file, in file order, to its scan (the line numbers counted on from the parts before)."""

    def __init__(self, scan: FileScan, keep_lines: bool) -> None:
        self.scan, self.keep_lines = scan, keep_lines
        self.lines = 0  # the lines of the parts added so far
        self.last_line = 0  # the number of the last line so far that is not blank

    def add(self, part: Part) -> None:
        scan, base = self.scan, self.lines
        for code, numbers in part.codes.items():
            scan.lines.setdefault(code, []).extend([base + n for n in numbers])
        if part.last:
            self.last_line = base + part.last
        scan.examples += part.examples
        scan.tokens += part.tokens
        scan.estimated += part.estimated
        scan.leaked |= part.leaked
        scan.leaked_prompts |= part.leaked_prompts
        new = set(part.digests)
        if not self.keep_lines and len(new) == len(part.digests) and scan.seen.isdisjoint(new):
            scan.seen |= new  # no duplicate in this part: the common case, without a loop
        else:
            for d, n in zip(part.digests, part.digest_lines, strict=True):
                if d in scan.seen:
                    scan.add("duplicate_example", base + n)
                else:
                    scan.seen.add(d)
                    if self.keep_lines:
                        scan.example_lines[d] = base + n
        for d, n in part.prompts:
            scan.prompt_lines.setdefault(d, base + n)
        scan.prompt_hashes |= part.prompt_hashes
        self.lines += part.lines


def _merge(merger: Merger, parts: Iterator[Part], expected_lines: int) -> int:
    """Add the parts to the merger's scan; return the number of the last line that is not blank.
    ``expected_lines``: the progress bar's total (0: no bar)."""
    with bar(f"validating {storage.name(merger.scan.path)}", expected_lines) as show:
        show(merger.lines)
        for part in parts:
            merger.add(part)
            show(merger.lines)
    return merger.last_line


def default_workers() -> int:
    return os.cpu_count() or 1
