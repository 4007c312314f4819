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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from ftprep.errors import TemplateError
from ftprep.models import DatasetRef, FormatPlan, SplitPlan, Template

# ------------------------------------------------------------------------------------------- presets
COURSE_SYSTEM = "You estimate prices of items. Reply only with the price, no explanation"
COURSE_QUESTION = "How much does this cost to the nearest dollar?"
PRICE_PREFIX = "Price is $"

PRESETS: dict[str, Template] = {
    # The course notebook (GPT-4o-mini price estimator): system + user + "Price is $226.95".
    "course": Template(
        name="course", system=COURSE_SYSTEM, user="{course_question}", assistant="Price is ${price:.2f}",
        nonnegative=("price",),
    ),
    # The newer course version: no system message, user from the item's summary, assistant "$226.95".
    "course-summary": Template(
        name="course-summary",
        system=None,
        user="Estimate the price of this product. Respond with the price, no explanation\n\n{summary}",
        assistant="${price:.2f}",
        nonnegative=("price",),
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
    if not (isinstance(title, str) and title and isinstance(body, str) and body):
        raise KeyError("prompt")
    return f"{COURSE_QUESTION}\n\n{title}\n{body}\n\n{PRICE_PREFIX}{round(record['price'])}.00"


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
    unknown = set(data) - {"name", "system", "user", "assistant", "nonnegative"}
    if unknown or "user" not in data or "assistant" not in data:
        raise TemplateError(
            f"template file {path} needs string keys user and assistant (optional: system, nonnegative); "
            f"found {', '.join(sorted(data)) or 'none'}"
        )
    data.setdefault("name", path.stem)
    try:
        return Template(**{k: tuple(v) if k == "nonnegative" else v for k, v in data.items()})
    except Exception as e:  # pydantic ValidationError: say which key is wrong in one line
        raise TemplateError(f"template file {path} is invalid: {str(e).splitlines()[0]}") from None


def resolve_template(spec: str) -> Template:
    """A preset name or the path of a ``.json``/``.toml`` template file."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if path.suffix.lower() in (".json", ".toml"):
        if not path.is_file():
            raise TemplateError(f"template file {path} does not exist; give a preset ({', '.join(PRESETS)}) "
                                "or a .json/.toml template file")
        return load_template_file(path)
    raise TemplateError(f"unknown template {spec!r}; use a preset ({', '.join(PRESETS)}) or a .json/.toml file")


_Piece = tuple[str, str | None, str]  # literal, field name, format spec


def _parse(text: str, where: str) -> list[_Piece]:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:
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
        pieces.append((literal, name, spec or ""))
    return pieces


def template_fields(template: Template) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for where, text in (("system", template.system), ("user", template.user), ("assistant", template.assistant)):
        if text is not None:
            names.update((name, None) for _, name, _ in _parse(text, where) if name)
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


class _RecordError(Exception):
    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem


def _getter(name: str, spec: str, nonnegative: bool) -> Callable[[Mapping[str, Any]], str]:
    derived = DERIVED.get(name, (None,))[0]

    def get(record: Mapping[str, Any]) -> str:
        try:
            value = record[name] if derived is None or name in record else derived(record)
        except KeyError:
            raise _RecordError(name, "is missing") from None
        if type(value) is str and not spec:
            return value  # the common case, first
        if value is None:
            raise _RecordError(name, "is empty (None/NaN)")
        if isinstance(value, float) and not math.isfinite(value):
            raise _RecordError(name, f"is {value}")
        if nonnegative and isinstance(value, (int, float)) and value < 0:
            raise _RecordError(name, f"is negative ({value})")
        if not spec:
            return value if isinstance(value, str) else str(value)
        try:
            return format(value, spec)
        except (ValueError, TypeError):
            raise _RecordError(name, f"is {value!r}, which does not fit format {{:{spec}}}") from None

    return get


def _compile_text(text: str, where: str, nonnegative: tuple[str, ...]) -> Callable[[Mapping[str, Any]], str] | str:
    """A function ``record -> text``, or the text itself when the template has no fields."""
    pieces = _parse(text, where)
    if all(name is None for _, name, _ in pieces):
        return "".join(lit for lit, _, _ in pieces)
    parts = [(lit, _getter(name, spec, name in nonnegative) if name else None) for lit, name, spec in pieces]
    if len(parts) == 1 and not parts[0][0]:
        return parts[0][1]  # the whole text is one field
    if len(parts) == 1:
        lit, get = parts[0]
        return lambda record: lit + get(record)
    return lambda record: "".join(lit + get(record) if get else lit for lit, get in parts)


def _message(role: str, content: Callable[[Mapping[str, Any]], str] | str) -> Callable[[Mapping[str, Any]], bytes]:
    # Each message is serialised on its own: orjson for the content string, constant bytes around it.
    head = b'{"role":' + orjson.dumps(role) + b',"content":'
    if isinstance(content, str):
        whole = head + orjson.dumps(content) + b"}"
        return lambda record: whole
    dumps = orjson.dumps
    return lambda record: head + dumps(content(record)) + b"}"


def compile_template(template: Template) -> Callable[[Mapping[str, Any], int], bytes]:
    """Return ``render(record, position) -> one JSONL line`` (bytes ending in a newline).

    The line is ``{"messages":[...]}`` with a system (if the template has one), user and assistant message.
    A record that cannot be rendered raises :class:`TemplateError` naming its position and field.
    """
    nonneg = template.nonnegative
    messages = [_message(role, _compile_text(text, role, nonneg))
                for role, text in (("system", template.system), ("user", template.user),
                                   ("assistant", template.assistant)) if text is not None]
    first, rest = messages[0], messages[1:]

    def render(record: Mapping[str, Any], position: int) -> bytes:
        try:
            line = b'{"messages":[' + first(record)
            for message in rest:
                line += b"," + message(record)
        except _RecordError as e:
            raise TemplateError(
                f"record {position}: field {e.field!r} {e.problem}; fix or drop that record "
                f"(template {template.name!r})"
            ) from None
        return line + b"]}\n"

    return render


# ----------------------------------------------------------------------------------------------- task
@task(name="format", cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def format_examples(template: Template, plan: SplitPlan) -> FormatPlan:
    """Check the template against the dataset's fields and render the first training example as a preview."""
    from tasks.load import records_for
    from tasks.split import slice_indices

    for s in (plan.train, plan.validation):
        if s is not None:
            check_fields(template, s.dataset)
    render = compile_template(template)
    first = slice_indices(plan.train)[0]
    preview = render(records_for(plan.train.dataset)[first], first).decode()
    get_run_logger().info("Template %r; first training example:\n%s", template.name, preview.strip())
    return FormatPlan(template=template, fields=template_fields(template), preview=preview)
