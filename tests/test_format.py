"""Formatting: the default preset reproduces the course notebook line for line."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import numpy as np
import orjson
import pandas as pd
import pytest

from ftprep.errors import TemplateError
from ftprep.models import DatasetRef, Template
from scripts.sample import generate_items
from tasks.format import PRESETS, check_fields, compile_template, resolve_template, template_fields
from tests import reference_notebook as nb


def render_all(template: Template, records) -> list[dict]:
    render = compile_template(template)
    return [orjson.loads(render(r, i)) for i, r in enumerate(records)]


def test_course_preset_equals_the_notebook_for_sample_items():
    records = list(generate_items(600))
    ours = render_all(PRESETS["course"], records)
    reference = [json.loads(line) for line in nb.make_jsonl([nb.Item(r) for r in records]).split("\n")]
    assert len(ours) == len(reference) == 600
    assert ours == reference


@pytest.mark.parametrize(
    "prompt, price",
    [
        ("How much does this cost to the nearest dollar?\n\nA\nB\n\nPrice is $227.00", 226.95),
        # "Price is $" inside the text: the notebook cuts at the first one, and so do we
        ("How much does this cost to the nearest dollar?\n\nSign: Price is $5 today\n\nPrice is $3.00", 2.5),
        ('How much does this cost to the nearest dollar?\n\n12" \\ “quoted” ½ ° ™\n\nPrice is $1.00', 0.995),
    ],
)
def test_course_preset_edge_cases(prompt, price):
    record = {"prompt": prompt, "price": price}
    (ours,) = render_all(PRESETS["course"], [record])
    assert ours == json.loads('{"messages": ' + json.dumps(nb.messages_for(nb.Item(record))) + "}")


def test_course_preset_builds_the_prompt_for_items_without_one():
    (ours,) = render_all(PRESETS["course"], [{"title": "Knob", "description": "Bronze knob.", "price": 25.0}])
    assert ours["messages"][1] == {"role": "user", "content": "How much does this cost?\n\nKnob\nBronze knob."}
    assert ours["messages"][2] == {"role": "assistant", "content": "Price is $25.00"}


def test_summary_preset_matches_its_description():
    record = {"summary": "A red kettle, 1.7 l.", "price": 39.5}
    (ours,) = render_all(PRESETS["course-summary"], [record])
    assert ours == {"messages": nb.messages_for_summary(nb.Item(record))}
    assert [m["role"] for m in ours["messages"]] == ["user", "assistant"]
    assert ours["messages"][1]["content"] == "$39.50"


def test_custom_template_file(tmp_path):
    path = tmp_path / "salary.toml"
    path.write_text('system = "You estimate salaries."\nuser = "{title} in {city}"\n'
                    'assistant = "{salary:,.0f} {{USD}}"\n')
    template = resolve_template(str(path))
    assert template.name == "salary" and template_fields(template) == ("title", "city", "salary")
    (ours,) = render_all(template, [{"title": "Nurse", "city": "Leeds", "salary": 41000}])
    assert [m["content"] for m in ours["messages"]] == ["You estimate salaries.", "Nurse in Leeds", "41,000 {USD}"]


def test_json_template_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"user": "{q}", "assistant": "{a}"}))
    (ours,) = render_all(resolve_template(str(path)), [{"q": "2+2?", "a": 4}])
    assert ours == {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}


@pytest.mark.parametrize(
    "spec, content, message",
    [
        ("nope", None, r"unknown template 'nope' \(--template\); use a preset"),
        ("missing.toml", None, "does not exist"),
        ("bad.toml", 'user = "{a"\nassistant = "x"\n', "invalid"),
        ("bad2.toml", 'user = "{a.b}"\nassistant = "x"\n', "not a plain field name"),
        ("bad3.json", '{"user": "x"}', "needs string keys user and assistant"),
        ("bad4.json", "{not json", "cannot be read"),
        ("typo.toml", 'sytem = "s"\nuser = "{a}"\nassistant = "x"\n',
         r"found assistant, sytem, user \(unknown: sytem\)"),
    ],
)
def test_bad_templates(tmp_path, spec, content, message):
    if content is not None:
        (tmp_path / spec).write_text(content)
    with pytest.raises(TemplateError, match=message):
        template = resolve_template(str(tmp_path / spec) if content is not None or spec.endswith(".toml") else spec)
        template_fields(template)


def test_template_naming_a_missing_field():
    ref = DatasetRef(path="/d.csv", sha256="0" * 64, format="csv", size_bytes=1, records=1, fields=("title", "cost"))
    with pytest.raises(TemplateError, match=r"needs field 'course_question' \(made from prompt or .*\), but /d.csv"):
        check_fields(PRESETS["course"], ref)
    with pytest.raises(TemplateError, match="needs field 'summary'"):
        check_fields(PRESETS["course-summary"], ref)


@pytest.mark.parametrize(
    "price, message",
    [
        (float("nan"), "is NaN"),
        (float("inf"), "is infinite"),
        (-3.0, r"is negative \(-3.0\)"),
        (None, r"is empty"),
        ("cheap", "is 'cheap', not a number"),
    ],
)
def test_bad_prices_name_the_record_and_field(price, message):
    render = compile_template(PRESETS["course"])
    record = {"prompt": "How much does this cost to the nearest dollar?\n\nX\n\nPrice is $1.00", "price": price}
    with pytest.raises(TemplateError, match=rf"record 17: field 'price' {message}"):
        render(record, 17)


def test_a_missing_field_is_named_even_after_other_records_rendered():
    render = compile_template(PRESETS["course"])
    good = {"prompt": "How much does this cost to the nearest dollar?\n\nX\n\nPrice is $1.00", "price": 1.0}
    with pytest.raises(TemplateError, match=r"record 1: field 'title' is missing or empty, and the record has no "
                                            r"prompt to use instead; fix or drop that record \(template 'course'\)"):
        render.chunk([good, {"price": 2.0}], [0, 1])
    # the course's derived user message is named by the field the data lacks, not by its own name
    with pytest.raises(TemplateError, match=r"record 1: field 'details' is missing or empty \(and so is description\)"):
        render.chunk([good, {"title": "Kettle", "details": "", "price": 2.0}], [0, 1])


@pytest.mark.parametrize("price, problem", [(float("nan"), "is NaN"), (None, r"is empty \(None/NaN\)"),
                                            (Decimal("NaN"), "is NaN"), (True, "is a boolean"),
                                            (-5, r"is negative \(-5\)"), (10**400, "is .*beyond the bound")],
                         ids=["nan", "none", "decimal-nan", "bool", "negative", "400-digits"])
def test_items_without_prompt_name_a_bad_price(price, problem):
    render = compile_template(PRESETS["course"])
    with pytest.raises(TemplateError, match=rf"record 4: field 'price' {problem}"):
        render({"title": "Knob", "description": "Bronze.", "price": price}, 4)


def test_a_format_spec_that_does_not_fit_the_value_is_one_clear_error(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('user = "{title}"\nassistant = "{salary:d} USD"\n')
    render = compile_template(resolve_template(str(path)))
    assert render({"title": "x", "salary": 41000}, 0).endswith(b'"41000 USD"}]}\n')  # an int fits {:d}
    with pytest.raises(TemplateError, match=r"record 1: field 'salary' is 41000.0, which does not fit format \{:d\}"):
        render({"title": "x", "salary": 41000.0}, 1)


def test_nonnegative_must_be_a_list(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('user = "{t}"\nassistant = "{salary}"\nnonnegative = "salary"\n')
    with pytest.raises(TemplateError, match="nonnegative must be a list of field names"):
        resolve_template(str(path))


# ---------------------------------------------------------------- one numeric check, whatever the loader produced
COURSE_RECORD = {"prompt": "How much does this cost to the nearest dollar?\n\nX\n\nPrice is $1.00"}


@pytest.mark.parametrize(
    "price, written",
    [
        (226.95, "Price is $226.95"),
        (5, "Price is $5.00"),
        (Decimal("12.5"), "Price is $12.50"),
        (np.float64(3.25), "Price is $3.25"),
        (np.float32(2.5), "Price is $2.50"),
        (np.int64(7), "Price is $7.00"),
        ("1,299.00", "Price is $1299.00"),
        ("$4.10", "Price is $4.10"),
        (-0.0, "Price is $0.00"),
        (Decimal("-0"), "Price is $0.00"),
        (0.0, "Price is $0.00"),
        (999_999_999_999.0, "Price is $999999999999.00"),
    ],
)
def test_every_type_a_loader_produces_is_checked_and_written_alike(price, written):
    line = compile_template(PRESETS["course"])(dict(COURSE_RECORD, price=price), 0)
    assert orjson.loads(line)["messages"][-1]["content"] == written


@pytest.mark.parametrize(
    "price, problem",
    [
        (float("nan"), "is NaN"),
        (Decimal("NaN"), "is NaN"),
        (Decimal("sNaN"), "is NaN"),
        (np.float64("nan"), "is NaN"),
        (pd.NA, "is empty"),
        ("nan", "is NaN"),
        (float("-inf"), "is -infinite"),
        (Decimal("Infinity"), "is infinite"),
        (True, "is a boolean"),
        (np.bool_(False), "is a boolean"),
        (-5, r"is negative \(-5\)"),
        (Decimal("-5"), r"is negative \(-5\)"),
        (np.float64(-0.5), r"is negative \(-0.5\)"),
        ("-3", r"is negative \(-3\)"),
        (1e12, "is 1000000000000.0, beyond the bound of 1e\\+12"),
        (10**400, r"is 100000000000…\(401 digits\), beyond the bound"),
        (Decimal("1e400"), "is 1E\\+400, beyond the bound"),
        ("cheap", "is 'cheap', not a number"),
    ],
)
def test_bad_numbers_of_every_type_stop_the_run_naming_record_and_field(price, problem):
    render = compile_template(PRESETS["course"])
    with pytest.raises(TemplateError, match=rf"^record 9: field 'price' {problem}.*; fix or drop that record"):
        render(dict(COURSE_RECORD, price=price), 9)


def test_the_fast_path_takes_only_plain_positive_floats_inside_the_bound(monkeypatch):
    import tasks.format as fmt

    calls = []
    real = fmt.convert_number
    monkeypatch.setattr(fmt, "convert_number", lambda *a: calls.append(a[0]) or real(*a))
    template = Template(name="fast-path-probe", user="{t}", assistant="{p:.2f} {q:.1f}", nonnegative=("p",))
    render = fmt.Renderer(template)  # not the cached one: the probe is bound when the template is compiled
    for p in (1.5, 0.0, -0.0, 5, Decimal("1.5"), np.float64(1.5), "1.5", 1e12 - 1):
        render({"t": "x", "p": p, "q": 2.0}, 0)
    assert [type(v).__name__ for v in calls] == ["float", "float", "int", "Decimal", "float64", "str"]
    calls.clear()
    for q in (-2.5, 2.5, -0.0, 0.0, -0.001):
        render({"t": "x", "p": 1.0, "q": q}, 0)
    assert calls == [-0.0, 0.0]  # -0.001 is fast, and written 0.0 thanks to the z option
    assert orjson.loads(render({"t": "x", "p": 1.0, "q": -0.001}, 0))["messages"][-1]["content"] == "1.00 0.0"
    assert orjson.loads(render({"t": "x", "p": 1.0, "q": -0.0}, 0))["messages"][-1]["content"] == "1.00 0.0"


def test_signed_fields_keep_their_sign_and_all_numeric_specs_are_checked(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('user = "{t}"\nassistant = "{delta:+.1f} {count:d} {total:,} {name}"\n')
    render = compile_template(resolve_template(str(path)))
    ok = {"t": "x", "delta": -2.25, "count": "12", "total": 1234567, "name": "n"}
    assert orjson.loads(render(ok, 0))["messages"][-1]["content"] == "-2.2 12 1,234,567 n"
    for field, value, problem in [("delta", float("inf"), "is infinite"), ("count", True, "is a boolean"),
                                  ("total", Decimal("NaN"), "is NaN"),
                                  ("total", 10**13, "is 10000000000000, beyond the bound")]:
        with pytest.raises(TemplateError, match=rf"record 3: field '{field}' {problem}"):
            render(dict(ok, **{field: value}), 3)


def test_the_bound_is_documented_and_a_template_may_raise_it(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text('user = "{t}"\nassistant = "{gdp:.0f}"\nbound = 1e15\n')
    template = resolve_template(str(path))
    assert template.bound == 1e15 and PRESETS["course"].bound == 1e12
    render = compile_template(template)
    assert orjson.loads(render({"t": "x", "gdp": 2.5e13}, 0))["messages"][-1]["content"] == "25000000000000"
    with pytest.raises(TemplateError, match="field 'gdp' is 2000000000000000.0, beyond the bound of 1e\\+15"):
        render({"t": "x", "gdp": 2e15}, 1)
    for bad in ("0", "-1", "inf", "nan", '"big"', "true"):
        path.write_text(f'user = "{{t}}"\nassistant = "{{gdp:.0f}}"\nbound = {bad}\n')
        with pytest.raises(TemplateError, match="bound must be a positive finite number"):
            resolve_template(str(path))


def test_declared_nonnegative_fields_are_checked_without_a_spec_too():
    template = Template(name="plain", user="{t}", assistant="{price} {note}", nonnegative=("price",))
    render = compile_template(template)
    assert orjson.loads(render({"t": "x", "price": -0.0, "note": 1.5}, 0))["messages"][-1]["content"] == "0.0 1.5"
    for price, problem in [("-2", "is negative"), (Decimal("NaN"), "is NaN"), (False, "is a boolean")]:
        with pytest.raises(TemplateError, match=rf"record 2: field 'price' {problem}"):
            render({"t": "x", "price": price, "note": "n"}, 2)
    with pytest.raises(TemplateError, match="record 2: field 'note' is NaN"):  # any number rendered is finite
        render({"t": "x", "price": 1, "note": float("nan")}, 2)


# ---------------------------------------------------------------------------------- no template can crash a run
@pytest.mark.parametrize("spec", ["999999999.2f", ".999999999f", ">1001", "0" * 10 + "99999999999"])
def test_an_enormous_width_or_precision_is_refused_when_the_template_is_read(tmp_path, spec):
    path = tmp_path / "wide.toml"
    path.write_text(f'user = "{{t}}"\nassistant = "{{price:{spec}}}"\n')
    with pytest.raises(TemplateError, match=r"width or precision \d+ is too large \(at most 1000\)"):
        template_fields(resolve_template(str(path)))


def test_nested_spec_fields_are_refused(tmp_path):
    path = tmp_path / "nested.json"
    path.write_text(json.dumps({"user": "{t}", "assistant": "{price:{width}.2f}"}))
    with pytest.raises(TemplateError, match="nested fields in a format spec are not supported"):
        template_fields(resolve_template(str(path)))


def test_a_lone_surrogate_in_a_record_or_template_is_one_clear_error(tmp_path):
    render = compile_template(PRESETS["course"])
    with pytest.raises(TemplateError, match="record 5: field 'course_question' holds text that is not valid Unicode"):
        render({"prompt": "How much\ud800?\n\nPrice is $1.00", "price": 1.0}, 5)
    path = tmp_path / "surrogate.json"
    path.write_text('{"user": "{t} \\ud800", "assistant": "{p}"}')
    with pytest.raises(TemplateError, match="template user is invalid"):
        template_fields(resolve_template(str(path)))


def test_a_deeply_nested_value_is_one_clear_error():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    render = compile_template(Template(name="deep", user="{t}", assistant="{a}"))
    with pytest.raises(TemplateError, match="record 0: field 't' is nested too deeply"):
        render({"t": deep, "a": "x"}, 0)


@pytest.mark.parametrize("spec", [".2q", "Z", ",.2k"])
def test_a_format_spec_no_value_takes_is_the_templates_fault_not_a_records(tmp_path, spec):
    """Before: the first record was blamed ("record 0: field 'price' is 41.17, which does not fit format")."""
    path = tmp_path / "typo.toml"
    path.write_text(f'user = "{{t}}"\nassistant = "{{price:{spec}}}"\n')
    with pytest.raises(TemplateError, match=rf"template assistant field {{price:{re.escape(spec)}}}: no number or "
                                            rf"text takes the format spec '{re.escape(spec)}'; fix the template"):
        template_fields(resolve_template(str(path)))
    for fine in (".2f", ",d", ">10", "%Y-%m-%d", ".1%", "s"):  # numbers, text and dates each take one of these
        path.write_text(f'user = "{{t}}"\nassistant = "{{price:{fine}}}"\n')
        template_fields(resolve_template(str(path)))
