"""How one field value becomes text: which format specs are numeric, and the careful path that checks values.

The generated renderer (:mod:`tasks.format`) formats plain floats itself; every other value goes through
:func:`convert_number` (numeric specs: :func:`ftprep.numeric.check_number`, then the spec) or
:func:`convert_text` (no spec or a non-numeric one). A value that cannot be written raises :class:`RecordError`
naming the field; the renderer adds the record's position.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ftprep.errors import TemplateError
from ftprep.numeric import NumericError, check_number, is_missing

MAX_SPEC_NUMBER = 1000  # widths and precisions in a format spec: {price:999999999.2f} would build a 1 GB string
# Python's format-spec mini-language: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(r"(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[-+ ])?(?P<z>z)?(?P<alt>#)?(?P<zero>0)?"
                   r"(?P<width>\d+)?(?P<grouping>[,_])?(?:\.(?P<precision>\d+))?(?P<type>[bcdeEfFgGnosxX%])?\Z",
                   re.DOTALL)
_FLOAT_TYPES, _INTEGER_TYPES = frozenset("eEfFgG%"), frozenset("bcdoxX")


def check_spec(spec: str, name: str, where: str) -> None:
    if "{" in spec or "}" in spec:
        raise TemplateError(f"template {where} field {{{name}:{spec}}}: nested fields in a format spec are not "
                            "supported; write the spec out")
    for run in re.findall(r"\d+", spec):
        digits = run.lstrip("0")
        if len(digits) > 6 or int(digits or 0) > MAX_SPEC_NUMBER:
            raise TemplateError(f"template {where} field {{{name}:{spec}}}: width or precision {run} is too large "
                                f"(at most {MAX_SPEC_NUMBER}); use a smaller number")
    if spec and "%" not in spec and not any(_takes(value, spec) for value in _SPEC_SAMPLES):  # "%": a date's own
        raise TemplateError(f"template {where} field {{{name}:{spec}}}: no number or text takes the format spec "
                            f"{spec!r}; fix the template (e.g. .2f, ,d, >10)")


_SPEC_SAMPLES = (1.5, 1, "x", Decimal("1.5"))  # what a field holds: a spec none of them takes is the template's fault


def _takes(value: Any, spec: str) -> bool:
    try:
        format(value, spec)
    except (ValueError, TypeError):
        return False
    return True


def numeric_spec(spec: str) -> bool:
    """Does this format spec render a number (``.2f``, ``,``, ``d``, ``+``...)? Such fields get the numeric check."""
    m = _SPEC.match(spec)
    if not spec or m is None:
        return False  # no spec, or a type's own spec (datetime's %Y-%m-%d): not numeric
    kind = m["type"] or ""
    if kind:
        return kind != "s"
    return bool(m["sign"] or m["z"] or m["alt"] or m["zero"] or m["grouping"] or m["align"] == "=")


def no_negative_zero(spec: str) -> str:
    """The spec with ``z`` (Python 3.11) for float types: -0.0 and -0.001 are written 0.00, never -0.00."""
    m = _SPEC.match(spec)
    if m is None or m["z"] or not m["type"] or m["type"] not in _FLOAT_TYPES:
        return spec
    head = (m["fill"] or "") + (m["align"] or "") + (m["sign"] or "")
    return head + "z" + spec[len(head):]


class RecordError(Exception):
    """A field of a record that cannot be written; the renderer adds the record's position."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem


def convert_text(value: Any, name: str, spec: str, nonnegative: bool) -> str:
    """The slow, careful path for a field without a numeric format spec (text, dates, ``{field}``).

    Numbers (not booleans) and fields the template declares non-negative get the same check as numeric specs,
    without the bound: NaN, infinite and (where declared) negative values stop the run; -0 is written 0.
    """
    if type(value) is str and not nonnegative:
        pass
    elif is_missing(value):
        raise RecordError(name, "is empty (None/NaN)")
    elif nonnegative or (isinstance(value, numbers.Number) and not isinstance(value, bool)):
        value = checked(value, name, nonnegative, math.inf)
    try:
        if not spec:
            return value if isinstance(value, str) else str(value)
        return format(value, spec)
    except (ValueError, TypeError):
        raise RecordError(name, f"is {_short(value)}, which does not fit format {{:{spec}}}") from None
    except RecursionError:
        raise RecordError(name, "is nested too deeply to be written as text") from None


def convert_number(value: Any, name: str, fmt: str, spec: str, nonnegative: bool, bound: float) -> str:
    """The careful path for a field with a numeric format spec: :func:`check_number`, then ``fmt`` (``spec``
    with ``z``). Every type a loader can produce passes the same check; the fast path takes only plain floats."""
    number = checked(value, name, nonnegative, bound)
    if isinstance(number, Decimal) and spec[-1:] in _INTEGER_TYPES and number == number.to_integral_value():
        number = int(number)  # "41000" parsed from text fits {:d}
    try:
        return format(number, fmt)
    except (ValueError, TypeError, OverflowError):
        raise RecordError(name, f"is {_short(value)}, which does not fit format {{:{spec}}}") from None


def checked(value: Any, name: str, nonnegative: bool, bound: float) -> float | int | Decimal:
    try:
        return check_number(value, nonnegative=nonnegative, bound=bound)
    except NumericError as e:
        raise RecordError(name, e.problem) from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}…({len(text)} characters)"


def bad_text_field(record: Mapping[str, Any], names: tuple[str, ...]) -> str:
    """The first field whose text cannot be written as UTF-8 (a lone surrogate, e.g. from a pickle)."""
    for name in names:
        value = record.get(name) if isinstance(record, Mapping) else None
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return name
    return names[0] if names else "?"
