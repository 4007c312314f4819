"""Formatting: the default preset reproduces the course notebook line for line."""

from __future__ import annotations

import json

import orjson
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
        ("nope", None, "unknown template 'nope'; use a preset"),
        ("missing.toml", None, "does not exist"),
        ("bad.toml", 'user = "{a"\nassistant = "x"\n', "invalid"),
        ("bad2.toml", 'user = "{a.b}"\nassistant = "x"\n', "not a plain field name"),
        ("bad3.json", '{"user": "x"}', "needs string keys user and assistant"),
        ("bad4.json", "{not json", "cannot be read"),
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
        (float("nan"), "is nan"),
        (float("inf"), "is inf"),
        (-3.0, r"is negative \(-3.0\)"),
        (None, r"is empty"),
        ("cheap", "is 'cheap', which does not fit format"),
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
    with pytest.raises(TemplateError, match=r"record 1: field 'course_question' is missing"):
        render.chunk([good, {"price": 2.0}], [0, 1])


@pytest.mark.parametrize("price, problem", [(float("nan"), "is nan, not a finite number"),
                                            (None, "is None, not a finite number")])
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
