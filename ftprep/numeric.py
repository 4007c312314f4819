"""One numeric check for every type a loader can produce, shared by prepare (templates) and evaluate (truths)."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

DEFAULT_BOUND = 1e12  # values at or beyond this are absurd for a price; a template may set its own bound


class NumericError(ValueError):
    """A value that cannot be used as a number; ``problem`` completes "field X ..." (e.g. "is NaN")."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


def is_missing(value: Any) -> bool:
    """None, pandas.NA, pandas.NaT or numpy NaT: an empty cell, whatever the loader."""
    if value is None:
        return True
    try:  # pandas.NA, pandas.NaT, numpy.datetime64("NaT") without importing pandas
        return type(value).__name__ in ("NAType", "NaTType")
    except Exception:  # noqa: BLE001
        return False


def to_number(value: Any) -> float | int | Decimal:
    """The value as a Python number: float, int and Decimal as they are, numpy/pandas scalars unwrapped, numeric
    strings parsed. Raises :class:`NumericError` for anything else (booleans included: ``True`` is not $1.00)."""
    if is_missing(value):
        raise NumericError("is empty (None/NaN)")
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        raise NumericError(f"is a boolean ({value!r}), not a number")
    if isinstance(value, (int, float, Decimal)):
        return value
    item = getattr(value, "item", None)  # numpy and pandas scalars
    if callable(item) and type(value).__module__.split(".")[0] in ("numpy", "pandas"):
        try:
            return to_number(item())
        except (TypeError, ValueError):
            raise NumericError(f"is {value!r}, not a number") from None
    if isinstance(value, str):
        text = value.strip().replace(",", "").removeprefix("$")
        try:
            return Decimal(text) if text else _fail(value)
        except InvalidOperation:
            raise NumericError(f"is {value!r}, not a number") from None
    raise NumericError(f"is a {type(value).__name__} ({value!r}), not a number")


def _fail(value: Any):
    raise NumericError(f"is {value!r}, not a number")


def check_number(value: Any, *, nonnegative: bool = False, bound: float = DEFAULT_BOUND) -> float | int | Decimal:
    """The value as a finite number within ``(-bound, bound)``, ``-0`` made ``0``; else :class:`NumericError`.

    NaN, infinite, boolean, non-numeric and absurd values (``abs(v) >= bound``) are refused; negative ones too
    when ``nonnegative``. Integers too long to convert to float (a 400-digit price) are absurd, not a crash.
    """
    number = to_number(value)
    if isinstance(number, Decimal):
        if number.is_nan():
            raise NumericError("is NaN")
        if number.is_infinite():
            raise NumericError(f"is {'-' if number < 0 else ''}infinite")
    elif isinstance(number, float) and not math.isfinite(number):
        raise NumericError("is NaN" if math.isnan(number) else f"is {'-' if number < 0 else ''}infinite")
    try:
        magnitude = abs(float(number))
    except OverflowError:
        magnitude = math.inf
    if magnitude >= bound:
        raise NumericError(f"is {_short(number)}, beyond the bound of {bound:g}; fix the value or raise the "
                           "template's bound")
    if nonnegative and number < 0:
        raise NumericError(f"is negative ({_short(number)})")
    if number == 0:
        return type(number)(0)  # -0.0 is written as 0.00
    return number


def _short(number: Any) -> str:
    text = str(number)
    return text if len(text) <= 24 else f"{text[:12]}…({len(text)} digits)"
