"""Validate: nothing malformed, duplicated or leaked reaches OpenAI, and what the data will cost.

Pure part: :func:`check_example` checks one line; :func:`validate_files` streams one or two JSONL files
(any chat fine-tuning file, not only ours) through it on both cores, adds the file-level checks
(minimum size, duplicates, training/validation leakage) and token statistics, and returns a
:class:`ValidationReport`; :func:`render_text` and :func:`render_markdown` show it. Every check has a
stable code in :data:`CHECKS` with its severity and a one-line remedy. Task part:
:func:`validate_written` runs after write and before upload; errors stop the flow there.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prefect import get_run_logger

from ftprep import storage
from ftprep.caching import TokenCounting
from ftprep.errors import InputError, ValidationFailed
from ftprep.models import FileReport, Finding, ValidationReport, WrittenFiles
from ftprep.names import ARTIFACT_TOKEN_STATS, ARTIFACT_VALIDATION, DEFAULT_PROJECT, artifact_key
from ftprep.openai_models import DEFAULT_MODEL, MIN_EXAMPLES, PRICES_AS_OF, default_epochs, model_spec
from ftprep.pause import pause_point
from ftprep.progress import bar
from ftprep.redact import redact, redact_obj
from ftprep.steps import task
from ftprep.tokens import TOOL_ESTIMATE_NOTE, UPPER_MARGIN, count_example, text_counter
from tasks import PIPELINE_CACHE
from tasks.token_stats import ALL, SAMPLE, in_sample, sample_cut, token_stats
from tasks.validation_checks import CHECKS, ERROR, WARNING
from tasks.validation_report import render_markdown, render_text, stats_table, summary_line

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
EXAMPLE_KEYS = {"messages", "tools", "functions", "parallel_tool_calls"}
MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal"}
LINES_SHOWN = 10
PARALLEL_MIN_LINES = 20_000
CHUNK_LINES = 5_000


# ------------------------------------------------------------------------------------------ one line
@dataclass(slots=True)
class LineResult:
    lineno: int
    codes: list[str] = field(default_factory=list)
    tokens: int | None = None
    upper: int | None = None  # never below the true count: what the per-example limit is checked against
    estimated: bool = False  # tools or calls were counted as estimates
    sampled: bool = False  # in the token sample: its count goes into the statistics
    example: bytes | None = None  # digest of the whole example, for duplicates and leakage
    prompt: bytes | None = None  # digest of its user messages, for prompt leakage


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _content_ok(content: Any) -> bool | None:
    """True if non-empty, False if empty, None if of a wrong type."""
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):
        if not content:
            return False
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
                return None
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                return None
            if part["type"] == "text" and not part["text"].strip():
                return False
        return True
    return None


def check_example(raw: bytes, lineno: int, count, encoding: str = "o200k_base", exact: bool = True,
                  limit: int | None = None, cut: int = ALL) -> LineResult:
    """Check one line of a chat fine-tuning file; count its tokens (:func:`ftprep.tokens.count_example`) if it is
    well-formed and in the sample (``cut``, see :mod:`tasks.token_stats`), or if its bytes cannot prove it under
    the per-example ``limit``."""
    result = LineResult(lineno)
    codes = result.codes
    if not raw.strip():
        codes.append("blank_line")
        return result
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            codes.append("not_utf8")
            return result
        codes.append("invalid_json")
        return result
    if not isinstance(obj, dict):
        codes.append("not_object")
        return result
    messages = obj.get("messages")
    if messages is None:
        codes.append("legacy_format" if "prompt" in obj and "completion" in obj else "missing_messages")
        return result
    if not set(obj) <= EXAMPLE_KEYS:
        codes.append("unknown_key")
    if not isinstance(messages, list):
        codes.append("messages_not_list")
        return result
    if not messages:
        codes.append("messages_empty")
        return result
    roles, users, well_formed = [], [], True
    for m in messages:
        if not isinstance(m, dict):
            codes.append("message_not_object")
            well_formed = False
            continue
        role = m.get("role")
        if role is None:
            codes.append("missing_role")
        elif not isinstance(role, str) or role not in ROLES:
            codes.append("invalid_role")
            well_formed = False
            role = str(role)
        roles.append(role)
        if not set(m) <= MESSAGE_KEYS:
            codes.append("unknown_message_key")
        if "content" not in m:
            if not (role == "assistant" and (m.get("tool_calls") or m.get("function_call"))):
                codes.append("missing_content")
        else:
            ok = _content_ok(m["content"])
            if ok is None and not (m["content"] is None and role == "assistant" and m.get("tool_calls")):
                codes.append("invalid_content")
                well_formed = False  # no token count for content of the wrong type
            elif ok is False:
                codes.append("empty_content")
        if "weight" in m and m["weight"] not in (0, 1):
            codes.append("invalid_weight")
        if role == "user" and isinstance(m.get("content"), str):
            users.append(m["content"])
    if "assistant" not in roles:
        codes.append("no_assistant")
    if "system" not in roles and "developer" not in roles:
        codes.append("missing_system")
    if "user" not in roles:
        codes.append("missing_user")
    if any(a == b for a, b in zip(roles, roles[1:], strict=False)):
        codes.append("consecutive_roles")
    result.example = _digest(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS))
    if users:
        result.prompt = _digest("\x00".join(users).encode())
    if well_formed:
        result.sampled = in_sample(result.example, cut)
        if result.sampled or limit is None or len(raw) + UPPER_MARGIN > limit:
            counted = count_example(obj, len(raw), count, encoding, exact)
            result.tokens, result.upper, result.estimated = counted.tokens, counted.upper, counted.estimated
        else:  # a token is at least one byte: the line's bytes prove it under the limit, no need to count
            result.upper = len(raw) + UPPER_MARGIN
    return result


def _check_chunk(encoding: str, limit: int, cut: int, lines: list[tuple[int, bytes]]) -> list[LineResult]:
    count, fallback = text_counter(encoding)
    return [check_example(raw, lineno, count, encoding, fallback is None, limit, cut) for lineno, raw in lines]


# ----------------------------------------------------------------------------------------- one file
def _read_lines(path: Path | str) -> Iterator[tuple[int, bytes]]:
    with storage.open_read(path) as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield lineno, raw.rstrip(b"\r\n")


def _chunks(lines: Iterable[tuple[int, bytes]], size: int) -> Iterator[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    for item in lines:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class _FileScan:
    path: Path | str
    role: str
    examples: int = 0
    tokens: list[int] = field(default_factory=list)
    estimated: int = 0  # examples whose count includes estimated tools or calls
    lines: dict[str, list[int]] = field(default_factory=dict)  # code -> line numbers
    example_lines: dict[bytes, int] = field(default_factory=dict)  # digest -> first line
    prompt_lines: dict[bytes, int] = field(default_factory=dict)
    sampled: bool = False

    def add(self, code: str, lineno: int) -> None:
        self.lines.setdefault(code, []).append(lineno)


def _scan(path: Path | str, role: str, encoding: str, limit: int, pool: ProcessPoolExecutor | None,
          exact_tokens: bool = False) -> _FileScan:
    scan = _FileScan(path, role)
    with storage.open_read(path) as f:
        if f.read(3) == b"\xef\xbb\xbf":
            scan.add("bom", 1)
    chunks = _chunks(_read_lines(path), CHUNK_LINES)
    first = next(chunks, [])
    average = sum(len(raw) + 1 for _, raw in first) / max(len(first), 1)
    size = storage.size(path)
    cut = sample_cut(size / max(average, 1.0), exact_tokens)
    chunks = itertools.chain([first], chunks) if first else iter(())
    if pool is None:
        results = (_check_chunk(encoding, limit, cut, c) for c in chunks)
    else:
        results = pool.map(_check_chunk, _repeat(encoding), _repeat(limit), _repeat(cut), chunks)
    last_line, done = 0, 0
    with bar(f"validating {storage.name(path)}", int(size / max(average, 1.0))) as show:
        for chunk in results:
            done += len(chunk)
            show(done)
            for r in chunk:
                last_line = _take(scan, r, limit, last_line)
    # Blank lines after the last example are harmless; blank lines between examples are not.
    blanks = [n for n in scan.lines.pop("blank_line", []) if n < last_line]
    if blanks:
        scan.lines["blank_line"] = blanks
    if scan.examples < MIN_EXAMPLES:
        scan.add("too_few_examples", 0)
    if cut < ALL and scan.examples <= SAMPLE:  # the size was misjudged: a small file is counted exactly
        return _scan(path, role, encoding, limit, pool, exact_tokens=True)
    scan.sampled = cut < ALL
    return scan


def _take(scan: _FileScan, r: LineResult, limit: int, last_line: int) -> int:
    """Add one line's result to the file's scan; return the number of the last non-blank line so far."""
    if r.codes == ["blank_line"]:
        scan.add("blank_line", r.lineno)
        return last_line
    for code in r.codes:
        scan.add(code, r.lineno)
    if "not_utf8" in r.codes or "invalid_json" in r.codes or "not_object" in r.codes:
        return r.lineno
    scan.examples += 1
    if r.tokens is not None and r.sampled:
        scan.tokens.append(r.tokens)
        scan.estimated += r.estimated
    if r.upper is not None and r.upper > limit:  # the upper bound: an estimate must never let an example through
        scan.add("too_many_tokens", r.lineno)
    if r.example is not None:
        first = scan.example_lines.setdefault(r.example, r.lineno)
        if first != r.lineno:
            scan.add("duplicate_example", r.lineno)
    if r.prompt is not None:
        scan.prompt_lines.setdefault(r.prompt, r.lineno)
    return r.lineno


def _repeat(value: Any) -> Iterator[Any]:
    while True:
        yield value


def _finding(code: str, path: Path | str, lines: list[int], detail: str = "") -> Finding:
    severity, message, remedy = CHECKS[code]
    return Finding(code=code, severity=severity, file=str(path), count=len(lines),
                   lines=tuple(lines[:LINES_SHOWN]), message=message + detail, remedy=remedy)


# --------------------------------------------------------------------------------------- the report
def validate_files(
    files: list[tuple[Path | str, str]],
    model: str = DEFAULT_MODEL,
    price_per_1m: float | None = None,
    workers: int | None = None,
    exact_tokens: bool = False,
) -> ValidationReport:
    """Validate JSONL files given as (path, role) with role "train", "validation" or "file".

    Structural checks, duplicates and leakage cover every line; token statistics and the cost come from a
    deterministic sample of large files unless ``exact_tokens`` (:mod:`tasks.token_stats`)."""
    spec = model_spec(model)
    for path, _ in files:  # one line for a missing file, a folder, a FIFO (never opened: it would block)...
        if (problem := storage.problem(path)) is not None:
            raise InputError(f"{path} {problem}; give a readable .jsonl file")
    _, estimated = text_counter(spec.encoding)
    total_bytes = sum(storage.size(p) for p, _ in files)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    pool = None
    if workers > 1 and total_bytes > PARALLEL_MIN_LINES * 200:
        import multiprocessing

        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        scans = []
        for path, role in files:
            try:
                scans.append(_scan(path, role, spec.encoding, spec.max_tokens_per_example, pool, exact_tokens))
            except OSError as e:  # a read error (EIO, a file removed or made unreadable meanwhile)
                raise InputError(f"{path} cannot be read ({e.strerror or e}); check the file") from None
    finally:
        if pool is not None:
            pool.shutdown()

    findings: list[Finding] = []
    for scan in scans:
        for code in CHECKS:
            if code in scan.lines:
                detail = f" ({scan.examples} found)" if code == "too_few_examples" else ""
                if code == "too_many_tokens":
                    detail = f" ({spec.max_tokens_per_example:,} for {model})"
                findings.append(_finding(code, scan.path, scan.lines[code], detail))
    train = next((s for s in scans if s.role == "train"), None)
    validation = next((s for s in scans if s.role == "validation"), None)
    if train is not None and validation is not None:
        exact = sorted(line for digest, line in validation.example_lines.items() if digest in train.example_lines)
        exact_set = set(exact)
        prompt = sorted(line for digest, line in validation.prompt_lines.items()
                        if digest in train.prompt_lines and line not in exact_set)
        if exact:
            findings.append(_finding("leakage_exact", validation.path, exact,
                                     f" ({len(exact)} of {validation.examples})"))
        if prompt:
            findings.append(_finding("leakage_prompt", validation.path, prompt,
                                     f" ({len(prompt)} of {validation.examples})"))

    reports = tuple(FileReport(path=str(s.path), role=s.role, examples=s.examples,
                               tokens=token_stats(s.tokens, spec.max_tokens_per_example, s.examples, s.estimated))
                    for s in scans)
    billed = train if train is not None else (scans[0] if len(scans) == 1 else None)
    epochs = billable = cost = None
    price = training_price(model, price_per_1m)
    billed_stats = next((r.tokens for r, s in zip(reports, scans, strict=True) if s is billed), None)
    if billed is not None and billed_stats is not None:
        epochs = default_epochs(billed.examples)
        billable = billed_stats.billable
        cost = round(billable * epochs * price / 1e6, 4)
    order = {ERROR: 0, WARNING: 1}
    findings.sort(key=lambda f: (order[f.severity], f.file, f.lines[:1]))
    as_of = PRICES_AS_OF if price == spec.training_usd_per_1m_tokens else None  # the table's price, dated
    tools_estimated = TOOL_ESTIMATE_NOTE if any(s.estimated for s in scans) else None
    return ValidationReport(model=model, encoding=spec.encoding, token_counts_estimated=estimated,
                            tool_token_estimates=tools_estimated,
                            files=reports, findings=tuple(findings), epochs=epochs, billable_tokens=billable,
                            price_per_1m_tokens=price, price_as_of=as_of, estimated_cost_usd=cost)


def training_price(model: str, override: float | None = None) -> float:
    """USD per 1M training tokens: ``override`` (FTPREP_TRAINING_PRICE_PER_1M, --price-per-million) when set,
    else the dated table's price."""
    return override if override is not None else model_spec(model).training_usd_per_1m_tokens


# ----------------------------------------------------------------------------------------------- task
def publish_report(report: ValidationReport, project: str = DEFAULT_PROJECT) -> None:
    """The report and its token statistics as the project's artifacts (the validate task on failure; publish on
    every run, so a cached re-run shows them too)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(key=artifact_key(ARTIFACT_VALIDATION, project), markdown=redact(render_markdown(report)),
                             description="Validation report of the fine-tuning files")
    create_table_artifact(key=artifact_key(ARTIFACT_TOKEN_STATS, project), table=redact_obj(stats_table(report)),
                          description=f"Token statistics ({report.encoding})")


@task(name="validate", cache_policy=PIPELINE_CACHE + TokenCounting(param="model"),
      persist_result=True)
def validate_written(files: WrittenFiles, model: str = DEFAULT_MODEL,
                     price_per_1m: float | None = None, exact_tokens: bool = False,
                     project: str = DEFAULT_PROJECT) -> ValidationReport:
    """Validate the written files; fail (before any upload) on errors, log warnings. (``project`` names the
    artifacts of a failure; it is no part of the cache key.)"""
    logger = get_run_logger()
    pause_point("validate")
    report = validate_files([(f.path, f.role) for f in files.files()], model=model, price_per_1m=price_per_1m,
                            exact_tokens=exact_tokens)
    for line in render_text(report).splitlines():
        level = "error" if line.startswith("error") else "warning" if line.startswith(("warning", "note")) else "info"
        getattr(logger, level)(line)
    if not report.ok:
        publish_report(report, project)
        raise ValidationFailed(summary_line(report))
    return report
