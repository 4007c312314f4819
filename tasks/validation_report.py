"""How a validation report is shown: plain text (the CLI, the logs), markdown and a table (the UI's artifacts)."""

from __future__ import annotations

from pathlib import Path

from ftprep.models import Finding, FineTuneConfig, ValidationReport

FINE_TUNE_EPOCHS = FineTuneConfig.model_fields["epochs"].default  # what `ftprep fine-tune` asks for by default


def _epochs(n: int | None) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def _per_epoch(report: ValidationReport) -> float:
    return (report.billable_tokens or 0) * (report.price_per_1m_tokens or 0.0) / 1e6


def _where(f: Finding) -> str:
    if f.lines == (0,):
        return Path(f.file).name
    shown = ", ".join(map(str, f.lines)) + (f", … ({f.count} lines)" if f.count > len(f.lines) else "")
    return f"{Path(f.file).name} line{'s' if f.count > 1 else ''} {shown}"


def render_text(report: ValidationReport) -> str:
    out = []
    for f in report.files:
        line = f"{f.role:<10} {f.path}: {f.examples:,} examples"
        if f.tokens:
            t = f.tokens
            line += (f"; tokens per example min {t.min:,}, median {t.median:,.0f}, p90 {t.p90:,}, max {t.max:,}; "
                     f"total {t.total:,}" + (f" ({t.estimated:,} examples estimated)" if t.estimated else "")
                     + (f" ± {t.total_ci95:,} (95%; from a sample of {t.sampled:,} examples, the limit checked on "
                        "every one; --exact-tokens counts all)" if t.sampled else ""))
        out.append(line)
    if report.token_counts_estimated:
        out.append(f"note: {report.token_counts_estimated}")
    if report.tool_token_estimates:
        out.append(f"note: {report.tool_token_estimates}")
    if report.billable_tokens is not None:
        out.append(f"training: {report.billable_tokens:,} billable tokens at ${report.price_per_1m_tokens:.2f}/1M "
                   f"tokens ({report.model}{', price as of ' + report.price_as_of if report.price_as_of else ''}) = "
                   f"about ${_per_epoch(report):,.2f} an epoch (ftprep fine-tune's default: {_epochs(FINE_TUNE_EPOCHS)}"
                   f"); x {_epochs(report.epochs)}, OpenAI's default for this size (--epochs auto), = about "
                   f"${report.estimated_cost_usd:,.2f}")
    for f in report.findings:
        out.append(f"{f.severity}: [{f.code}] {_where(f)}: {f.message}; {f.remedy}")
    verdict = "valid" if report.ok else "NOT valid"
    out.append(f"{verdict}: {report.errors} error(s), {report.warnings} warning(s)")
    return "\n".join(out)


def render_markdown(report: ValidationReport) -> str:
    out = [f"# Validation: {'valid' if report.ok else 'NOT valid'}", "",
           f"{report.errors} error(s), {report.warnings} warning(s); model `{report.model}`, "
           f"encoding `{report.encoding}`.", ""]
    for note in (report.token_counts_estimated, report.tool_token_estimates):
        if note:
            out += [f"> {note}", ""]
    for f in report.files:
        if f.tokens and f.tokens.sampled:
            out += [f"> {f.role}: token statistics from a sample of {f.tokens.sampled:,} of {f.examples:,} examples; "
                    f"total {f.tokens.total:,} ± {f.tokens.total_ci95:,} (95%). The per-example limit was checked on "
                    "every example.", ""]
    if report.findings:
        out += ["| severity | code | where | problem | remedy |", "|---|---|---|---|---|"]
        out += [f"| {f.severity} | `{f.code}` | {_where(f)} | {f.message} | {f.remedy} |" for f in report.findings]
        out.append("")
    if report.estimated_cost_usd is not None:
        out.append(f"Estimated training cost: **${_per_epoch(report):,.2f} an epoch** ({report.billable_tokens:,} "
                   f"billable tokens at ${report.price_per_1m_tokens:.2f}/1M tokens); ftprep fine-tune's default is "
                   f"{_epochs(FINE_TUNE_EPOCHS)}. With OpenAI's default for this size (`--epochs auto`), "
                   f"{_epochs(report.epochs)}: **${report.estimated_cost_usd:,.2f}**.")
    return "\n".join(out)


def stats_table(report: ValidationReport) -> list[dict]:
    return [{"role": f.role, "file": Path(f.path).name, "examples": f.examples,
             **({k: getattr(f.tokens, k) for k in ("min", "median", "p90", "max", "total", "billable", "estimated",
                                                    "sampled", "total_ci95")}
                if f.tokens else {})} for f in report.files]


def summary_line(report: ValidationReport) -> str:
    parts = [f"{f.code} ({_where(f)})" for f in report.findings if f.severity == "error"]
    return (f"validation failed with {report.errors} error(s): " + "; ".join(parts[:5])
            + ("; ..." if len(parts) > 5 else "") + "; fix the data or template, nothing was uploaded")
