"""Token statistics of a file: exact, or from a deterministic sample with a 95% confidence interval.

Counting every token of 400,000 examples takes longer than writing them. The per-example limit does not need
counts (a token is at least one UTF-8 byte, so an example of fewer bytes than the limit is under it; only the
rest are tokenized), and the statistics and cost estimate are as good from a sample: each example is in it when
the first 8 bytes of its content digest fall below a cut chosen for about :data:`SAMPLE` examples, so the same
file gives the same sample. A file of at most :data:`SAMPLE` examples is counted exactly, and so is every file
with ``--exact-tokens``.
"""

from __future__ import annotations

import math

from ftprep.models import TokenStats

SAMPLE = 20_000  # examples counted per file when sampling; the total's relative error is then well under 1%
ALL = 1 << 64  # the cut that takes every example


def sample_cut(estimated_examples: float, exact: bool = False) -> int:
    """The digest cut that samples about SAMPLE of ``estimated_examples`` (ALL: count every example)."""
    if exact or estimated_examples <= SAMPLE * 1.1:
        return ALL
    return int(ALL * SAMPLE / estimated_examples)


def in_sample(digest: bytes, cut: int) -> bool:
    return cut >= ALL or int.from_bytes(digest[:8], "big") < cut


def token_stats(tokens: list[int], limit: int, examples: int, estimated: int) -> TokenStats | None:
    """Statistics of the counted examples; when they are a sample of ``examples``, totals are scaled up and the
    total carries its 95% confidence interval (finite-population corrected)."""
    if not tokens:
        return None
    ordered = sorted(tokens)
    n = len(ordered)
    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    p90 = ordered[min(n - 1, math.ceil(0.9 * n) - 1)]
    total, billable = sum(ordered), sum(min(t, limit) for t in ordered)
    over = sum(1 for t in ordered if t > limit)
    sampled = ci = None
    if n < examples:
        scale = examples / n
        mean = total / n
        variance = sum((t - mean) ** 2 for t in ordered) / max(n - 1, 1)
        ci = round(1.96 * math.sqrt(variance / n) * examples * math.sqrt(max(0.0, 1 - n / examples)))
        total, billable, over, sampled = round(total * scale), round(billable * scale), round(over * scale), n
    return TokenStats(examples=examples, min=ordered[0], median=median, p90=p90, max=ordered[-1], total=total,
                      billable=billable, over_limit=over, estimated=estimated, histogram=histogram(ordered),
                      sampled=sampled, total_ci95=ci)


def histogram(ordered: list[int] | list[float], bins: int = 30) -> tuple[tuple[float, int], ...]:
    """(lower edge, count) of ``bins`` equal bins over sorted values: small enough to persist with the report."""
    low, high = ordered[0], ordered[-1]
    width = (high - low) / bins or 1
    counts = [0] * bins
    for value in ordered:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return tuple((round(low + i * width, 4), c) for i, c in enumerate(counts))


