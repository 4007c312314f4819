"""Validate: nothing malformed, duplicated or leaked reaches OpenAI, and what the data will cost.

Pure part: :func:`validate_files` checks one or two JSONL files (any chat fine-tuning file, not only ours) line by
line on every core (:mod:`tasks.validation_scan`, :mod:`tasks.validation_line`), adds the file-level checks
(minimum size, duplicates, training/validation leakage) and token statistics, and returns a
:class:`ValidationReport`; :func:`render_text` and :func:`render_markdown` show it. Every check has a
stable code in :data:`CHECKS` with its severity and a one-line remedy. Task part:
:func:`validate_written` runs after write and before upload; errors stop the flow there.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger

from ftprep import storage
from ftprep.caching import TokenCounting
from ftprep.errors import InputError, ValidationFailed
from ftprep.models import FileReport, Finding, ValidationReport, WrittenFiles
from ftprep.names import ARTIFACT_TOKEN_STATS, ARTIFACT_VALIDATION, DEFAULT_PROJECT, artifact_key
from ftprep.openai_models import DEFAULT_MODEL, PRICES_AS_OF, default_epochs, model_spec
from ftprep.pause import pause_point
from ftprep.redact import redact, redact_obj
from ftprep.steps import task
from ftprep.tokens import TOOL_ESTIMATE_NOTE, load_ahead, text_counter
from tasks import PIPELINE_CACHE, scan_child
from tasks.token_stats import token_stats
from tasks.validation_checks import CHECKS, ERROR, WARNING
from tasks.validation_report import render_markdown, render_text, stats_table, summary_line
from tasks.validation_scan import FileScan, default_workers, scan_files

LINES_SHOWN = 10


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
    raw_digest: bool = False,
) -> ValidationReport:
    """Validate JSONL files given as (path, role) with role "train", "validation" or "file".

    Structural checks, duplicates and leakage cover every line; token statistics and the cost come from a
    deterministic sample of large files unless ``exact_tokens`` (:mod:`tasks.token_stats`). ``raw_digest``: the
    files are ftprep's own output, whose lines are canonical, so their bytes are digested as they are (see
    :func:`tasks.validation_line.check_example`)."""
    spec = model_spec(model)
    for path, _ in files:  # one line for a missing file, a folder, a FIFO (never opened: it would block)...
        if (problem := storage.problem(path)) is not None:
            raise InputError(f"{path} {problem}; give a readable .jsonl file")
    workers = workers if workers is not None else default_workers()
    scans, estimated = _scan(files, spec.encoding, spec.max_tokens_per_example, workers, exact_tokens, raw_digest)
    pair = {role: i for i, (_, role) in reversed(list(enumerate(files))) if role in ("train", "validation")}

    findings: list[Finding] = []
    for scan in scans:
        for code in CHECKS:
            if code in scan.lines:
                detail = f" ({scan.examples} found)" if code == "too_few_examples" else ""
                if code == "too_many_tokens":
                    detail = f" ({spec.max_tokens_per_example:,} for {model})"
                findings.append(_finding(code, scan.path, scan.lines[code], detail))
    train = scans[pair["train"]] if "train" in pair else None
    validation = scans[pair["validation"]] if "validation" in pair else None
    if train is not None and validation is not None:
        exact = sorted(line for digest, line in validation.example_lines.items() if digest in train.leaked)
        exact_set = set(exact)
        prompt = sorted(line for digest, line in validation.prompt_lines.items()
                        if digest in train.leaked_prompts and line not in exact_set)
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


def _scan(files: list[tuple[Path | str, str]], encoding: str, limit: int, workers: int, exact_tokens: bool,
          raw_digest: bool) -> tuple[list[FileScan], str | None]:
    """(the files' scans, why token counts are estimates or None): made by the validation process the command
    started (:mod:`tasks.scan_child`) when there is one, else here."""
    scanner = scan_child.current(files)
    if scanner is not None:
        try:
            return scanner.scan([(str(p), r) for p, r in files], encoding, limit, workers, exact_tokens, raw_digest)
        except scan_child.ScanUnavailable:
            pass  # it went away: scan here
    _, estimated = text_counter(encoding)  # loaded once here, shared by the forked workers
    return scan_files(files, encoding, limit, workers, exact_tokens, raw_digest), estimated


def count_ahead(model: str, out: str, exact_tokens: bool = False) -> None:
    """Have the model's encoding loaded by the time validation of files written to ``out`` needs it: in the
    validation process if the command started one and the files are local (which is then told how the validate
    step will scan them, so that it can check a large training file as it is written), else on a thread here
    (:func:`ftprep.tokens.load_ahead`)."""
    spec = model_spec(model)
    if scan_child.current([(out, "")]) is None:
        load_ahead(spec.encoding)
    else:  # as validate_written scans: its files are the writer's canonical output
        scan_child.plan((spec.encoding, spec.max_tokens_per_example, exact_tokens, True), default_workers())


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
    # the files are the writer's canonical output: their lines' bytes are digested as they are
    report = validate_files([(f.path, f.role) for f in files.files()], model=model, price_per_1m=price_per_1m,
                            exact_tokens=exact_tokens, raw_digest=True)
    for line in render_text(report).splitlines():
        level = "error" if line.startswith("error") else "warning" if line.startswith(("warning", "note")) else "info"
        getattr(logger, level)(line)
    if not report.ok:
        publish_report(report, project)
        raise ValidationFailed(summary_line(report))
    return report
