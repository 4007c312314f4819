"""Format: turn one record into one chat example, by a template.

Pure part: presets and template files (:func:`resolve_template`), :func:`compile_template` which checks a
template once and returns a fast ``record -> JSONL line`` function, and the reference course formatting.
Task part: :func:`format_examples` checks the template against the dataset's fields and renders a
preview before anything is written; ``tasks/write.py`` streams every record through the same function.
"""

from __future__ import annotations

import json
import math
import string
import tomllib
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from prefect import get_run_logger

from ftprep.errors import TemplateError
from ftprep.models import DatasetRef, FormatPlan, SplitPlan, Template
from ftprep.numeric import DEFAULT_BOUND
from ftprep.records import RecordStore
from ftprep.steps import task
from tasks import PIPELINE_CACHE
from tasks.field_values import (
    RecordError,
    bad_text_field,
    check_spec,
    checked,
    convert_number,
    convert_text,
    no_negative_zero,
    numeric_spec,
)

# ------------------------------------------------------------------------------------------- presets
COURSE_SYSTEM = "You estimate prices of items. Reply only with the price, no explanation"
COURSE_QUESTION = "How much does this cost to the nearest dollar?"
PRICE_PREFIX = "Price is $"

PRESETS: dict[str, Template] = {
    # The course notebook (GPT-4o-mini price estimator): system + user + "Price is $226.95".
    "course": Template(
        name="course", system=COURSE_SYSTEM, user="{course_question}", assistant="Price is ${price:.2f}",
        nonnegative=("price",), target="price",
    ),
    # The newer course version: no system message, user from the item's summary, assistant "$226.95".
    "course-summary": Template(
        name="course-summary",
        system=None,
        user="Estimate the price of this product. Respond with the price, no explanation\n\n{summary}",
        assistant="${price:.2f}",
        nonnegative=("price",), target="price",
    ),
}


# ------------------------------------------------------------------------------------ derived fields
def test_prompt(record: Mapping[str, Any]) -> str:
    """The course's ``Item.test_prompt()``: the prompt cut just after ``"Price is $"``."""
    return _cut(_prompt(record))


def _cut(prompt: str) -> str:
    # prompt.split(PREFIX)[0] == prompt.partition(PREFIX)[0], without splitting the rest
    return prompt.partition(PRICE_PREFIX)[0] + PRICE_PREFIX


def course_question(record: Mapping[str, Any]) -> str:
    """The reference user message: the test prompt without " to the nearest dollar" and "\\n\\nPrice is $"."""
    prompt = record.get("prompt")
    if type(prompt) is not str or not prompt:
        prompt = _prompt(record)
    return _cut(prompt).replace(" to the nearest dollar", "").replace("\n\nPrice is $", "")


def _prompt(record: Mapping[str, Any]) -> str:
    prompt = record.get("prompt")
    if isinstance(prompt, str) and prompt:
        return prompt
    # Items with no prompt (e.g. SimpleItem with title + description): build it as the course's Item does.
    body = record.get("details") or record.get("description")
    title = record.get("title")
    if not (isinstance(title, str) and title):  # the field the data lacks, not the template's derived one
        raise RecordError("title", "is missing or empty, and the record has no prompt to use instead")
    if not (isinstance(body, str) and body):
        raise RecordError("details", "is missing or empty (and so is description), and the record has no prompt to "
                                     "use instead")
    # the one numeric check (check_number), as for a template's numeric fields: Decimal, numpy, strings, -0, absurd
    price = checked(record.get("price"), "price", True, DEFAULT_BOUND)
    return f"{COURSE_QUESTION}\n\n{title}\n{body}\n\n{PRICE_PREFIX}{round(price)}.00"


# name -> (function, field sets any one of which makes it available)
DERIVED: dict[str, tuple[Callable[[Mapping[str, Any]], str], tuple[frozenset[str], ...]]] = {
    "test_prompt": (test_prompt, (frozenset({"prompt"}), frozenset({"title", "details", "price"}),
                                  frozenset({"title", "description", "price"}))),
    "course_question": (course_question, (frozenset({"prompt"}), frozenset({"title", "details", "price"}),
                                          frozenset({"title", "description", "price"}))),
}


# ------------------------------------------------------------------------------------------ templates
def load_template_file(path: Path) -> Template:
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode()) if path.suffix.lower() == ".toml" else json.loads(raw)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise TemplateError(f"template file {path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise TemplateError(f"template file {path} must hold an object with user and assistant keys")
    unknown = set(data) - {"name", "system", "user", "assistant", "nonnegative", "bound", "target"}
    if unknown or "user" not in data or "assistant" not in data:
        raise TemplateError(
            f"template file {path} needs string keys user and assistant (optional: system, nonnegative, bound, "
            f"target); found {', '.join(sorted(data)) or 'none'}"
            + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "")
        )
    bound = data.get("bound", 1.0)
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 0 < bound < math.inf:
        raise TemplateError(f"template file {path}: bound must be a positive finite number, like 1e15 "
                            f"(got {bound!r})")
    data.setdefault("name", path.stem)
    nonneg = data.get("nonnegative", [])
    if not (isinstance(nonneg, list) and all(isinstance(x, str) for x in nonneg)):
        raise TemplateError(f"template file {path}: nonnegative must be a list of field names, like [\"price\"]")
    try:
        return Template(**{k: tuple(v) if k == "nonnegative" else v for k, v in data.items()})
    except Exception as e:  # pydantic ValidationError: say which key is wrong in one line
        raise TemplateError(f"template file {path} is invalid: {str(e).splitlines()[0]}") from None


@lru_cache(maxsize=16)
def _load_template_file(path: Path, size: int, mtime_ns: int) -> Template:
    return load_template_file(path)  # read once per process and version of the file


def resolve_template(spec: str) -> Template:
    """A preset name or the path of a ``.json``/``.toml`` template file."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if path.suffix.lower() in (".json", ".toml"):
        if not path.is_file():
            raise TemplateError(f"template file {path} does not exist; give a preset ({', '.join(PRESETS)}) "
                                "or a .json/.toml template file")
        st = path.stat()
        return _load_template_file(path.resolve(), st.st_size, st.st_mtime_ns)
    raise TemplateError(f"unknown template {spec!r} (--template); use a preset ({', '.join(PRESETS)}) or a .json/.toml "
                        "file")


_Piece = tuple[str, str | None, str]  # literal, field name, format spec

def _parse(text: str, where: str) -> list[_Piece]:
    try:
        text.encode("utf-8")
        parsed = list(string.Formatter().parse(text))
    except (ValueError, UnicodeEncodeError) as e:
        raise TemplateError(
            f"template {where} is invalid ({e}); write fields as {{name}} and braces as {{{{ }}}}"
        ) from None
    pieces = []
    for literal, name, spec, conversion in parsed:
        if name is not None:
            if not name.isidentifier():
                raise TemplateError(f"template {where} field {{{name}}} is not a plain field name")
            if conversion:
                raise TemplateError(f"template {where} field {{{name}!{conversion}}}: conversions are not supported")
            check_spec(spec or "", name, where)
        pieces.append((literal, name, spec or ""))
    return pieces


def template_fields(template: Template) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for where, text in (("system", template.system), ("user", template.user), ("assistant", template.assistant)):
        if text is not None:
            names.update((name, None) for _, name, _ in _parse(text, where) if name)
    return tuple(names)


def record_fields(template: Template) -> tuple[str, ...]:
    """Every field rendering may read: the template's own, and those its derived fields are made from."""
    names = dict.fromkeys(template_fields(template))
    for name in list(names):
        for need in DERIVED.get(name, (None, ()))[1]:
            names.update(dict.fromkeys(sorted(need)))
    return tuple(names)


def check_fields(template: Template, data: DatasetRef) -> None:
    have = set(data.fields)
    for name in template_fields(template):
        if name in have:
            continue
        if name in DERIVED and any(need <= have for need in DERIVED[name][1]):
            continue
        need = f"field {name!r}"
        if name in DERIVED:
            need = f"field {name!r} (made from " + " or ".join("+".join(sorted(s)) for s in DERIVED[name][1]) + ")"
        raise TemplateError(
            f"template {template.name!r} needs {need}, but {data.path} has fields "
            f"{', '.join(data.fields)}; choose another --template or rename the field"
        )


class Renderer:
    """``render(record, position)`` gives one JSONL line; ``render.chunk(records, positions)`` many, joined.

    The template is compiled once into a small Python function (as :mod:`dataclasses` does for
    ``__init__``): one loop per chunk, the field look-ups and checks inlined, each message's content
    serialised by orjson between constant bytes. Lines are ``{"messages":[...]}`` with the system (if
    any), user and assistant message. A record that cannot be rendered raises :class:`TemplateError`
    naming its position and field.
    """

    def __init__(self, template: Template):
        self.template = template
        body, env = _generate(template)
        namespace: dict[str, Any] = {}
        exec(compile(body, f"<template {template.name}>", "exec"), env, namespace)  # noqa: S102 - our own code
        self._chunk = namespace["render_chunk"]
        self.source = body

    def chunk(self, records: Sequence[Mapping[str, Any]], positions: Sequence[int]) -> bytes:
        try:
            return self._chunk(records, positions)
        except RecordError as e:
            raise TemplateError(
                f"record {e.position}: field {e.field!r} {e.problem}; fix or drop that record "
                f"(template {self.template.name!r})"
            ) from None

    def __call__(self, record: Mapping[str, Any], position: int) -> bytes:
        return self.chunk(_One(record, position), (position,))


class _One:
    def __init__(self, record: Mapping[str, Any], position: int):
        self.record, self.position = record, position

    def __getitem__(self, i: int) -> Mapping[str, Any]:
        return self.record


def _fits_float(spec: str) -> bool:
    try:
        format(1.5, spec)
    except (ValueError, TypeError):
        return False
    return True


def _generate(template: Template) -> tuple[str, dict[str, Any]]:
    env: dict[str, Any] = {"dumps": orjson.dumps, "convert": convert_text, "number": convert_number,
                           "RecordError": RecordError,
                           "EncodeError": orjson.JSONEncodeError, "bad_text": bad_text_field,
                           "NAMES": template_fields(template), "B": float(template.bound)}
    values: list[str] = []  # lines computing s0, s1, ... (one per field occurrence)
    segments: list[str] = []  # the expression of the line, as pieces joined by " + "
    constant = b'{"messages":['
    for role, text in (("system", template.system), ("user", template.user), ("assistant", template.assistant)):
        if text is None:
            continue
        head = (b"," if constant != b'{"messages":[' or segments else b"") + b'{"role":' + orjson.dumps(role)
        head += b',"content":'
        pieces = _parse(text, role)
        if all(name is None for _, name, _ in pieces):
            constant += head + orjson.dumps("".join(lit for lit, _, _ in pieces)) + b"}"
            continue
        parts = []
        for literal, name, spec in pieces:
            if literal:
                env[f"L{len(env)}"] = literal
                parts.append(f"L{len(env) - 1}")
            if name is None:
                continue
            k = len(values)
            nonneg = name in template.nonnegative
            fetch = f"record[{name!r}]"
            if name in DERIVED:
                env[f"D_{name}"] = DERIVED[name][0]
                fetch = f"(record[{name!r}] if {name!r} in record else D_{name}(record))"
            if numeric_spec(spec):
                # Fast path: a plain finite float strictly inside the bound, not zero (so not -0.0), and > 0 for a
                # non-negative field (NaN fails every comparison). Everything else (ints, Decimals, numpy
                # scalars, strings, -0.0, NaN, inf, absurd values) takes the careful path through check_number.
                fmt = no_negative_zero(spec)
                fast = ("type(v) is float and " + ("0.0 < v < B" if nonneg else "-B < v < B and v != 0.0"))
                if not _fits_float(fmt):
                    fast = "False"  # e.g. {n:d}: every value takes the careful path, which names a misfit
                values.append(f"f = {name!r}; v = {fetch}\n"
                              f"            s{k} = format(v, {fmt!r}) if {fast} else "
                              f"number(v, f, {fmt!r}, {spec!r}, {nonneg}, B)")
            elif spec:
                values.append(f"f = {name!r}; v = {fetch}\n"
                              f"            s{k} = convert(v, f, {spec!r}, {nonneg})")
            else:
                values.append(f"f = {name!r}; v = {fetch}\n"
                              f"            s{k} = " + ("" if nonneg else "v if type(v) is str else ")
                              + f"convert(v, f, '', {nonneg})")
            parts.append(f"s{k}")
        env[f"C{len(env)}"] = constant + head
        segments.append(f"C{len(env) - 1}")
        segments.append(f"dumps({' + '.join(parts)})")
        constant = b"}"
    env[f"C{len(env)}"] = constant + b"]}\n"
    segments.append(f"C{len(env) - 1}")
    compute = "\n            ".join(values)
    body = f"""
def render_chunk(records, positions):
    out = []
    append = out.append
    i = f = None
    try:
        for i in positions:
            record = records[i]
            {compute or 'pass'}
            append({' + '.join(segments)})
    except KeyError:
        error = RecordError(f, "is missing")
        error.position = i
        raise error from None
    except RecordError as error:
        error.position = i
        raise
    except EncodeError:  # text that is not valid Unicode (a lone surrogate)
        error = RecordError(bad_text(record, NAMES), "holds text that is not valid Unicode (a lone surrogate); "
                            "fix the text")
        error.position = i
        raise error from None
    return b"".join(out)
"""
    return body, env


@lru_cache(maxsize=16)
def compile_template(template: Template) -> Renderer:
    """Compile a template once per process (templates are frozen, so equal templates share it); see
    :class:`Renderer`."""
    return Renderer(template)


# ----------------------------------------------------------------------------------------------- task
@task(name="format", cache_policy=PIPELINE_CACHE, persist_result=True)
def format_examples(template: Template, plan: SplitPlan, store: RecordStore) -> FormatPlan:
    """Check the template against the dataset's fields and render the first training example as a preview."""
    from tasks.split import slice_indices

    for s in (plan.train, plan.validation):
        if s is not None:
            check_fields(template, s.dataset)
    render = compile_template(template)
    first = slice_indices(plan.train)[0]
    preview = render(store.read(plan.train.dataset.path, plan.train.dataset.sha256)[first], first).decode()
    get_run_logger().info("Template %r; first training example:\n%s", template.name, preview.strip())
    return FormatPlan(template=template, fields=template_fields(template), preview=preview)
