"""The validation gate: every check on a crafted file, the real course files, token counts and cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ftprep.openai_models import default_epochs
from ftprep.tokens import count_chat_tokens, text_counter
from tasks.validate import CHECKS, render_markdown, render_text, validate_files

REAL = Path(__file__).resolve().parents[2] / "shared" / "real-data" / "course-jsonl"
needs_real = pytest.mark.skipif(not REAL.exists(), reason="../shared/real-data is not present")


def example(user: str = "How much is a kettle?", answer: str = "Price is $20.00", system: bool = True) -> dict:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    if system:
        messages.insert(0, {"role": "system", "content": "You estimate prices."})
    return {"messages": messages}


def good_lines(n: int = 12, prefix: str = "item") -> list[str]:
    return [json.dumps(example(f"{prefix} {i}")) for i in range(n)]


def write(tmp_path: Path, name: str, lines: list[str] | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())
    return path


def codes(report) -> dict[str, tuple[int, ...]]:
    return {f.code: f.lines for f in report.findings}


# code -> (lines to put after 12 good ones (line numbers 13, 14, ...) or whole bytes, expected lines)
BAD_LINE = {
    "invalid_json": (['{"messages": [}'], (13,)),
    "not_object": (["[1, 2]"], (13,)),
    "legacy_format": (['{"prompt": "2+2=", "completion": "4"}'], (13,)),
    "missing_messages": (['{"msgs": []}'], (13,)),
    "messages_not_list": (['{"messages": "hi"}'], (13,)),
    "messages_empty": (['{"messages": []}'], (13,)),
    "unknown_key": ([json.dumps(example("u") | {"meta": 1})], (13,)),
    "message_not_object": (['{"messages": ["hi", {"role": "assistant", "content": "x"}]}'], (13,)),
    "missing_role": (['{"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]}'], (13,)),
    "invalid_role": (['{"messages": [{"role": "human", "content": "q"}, {"role": "assistant", "content": "a"}]}',
                      '{"messages": [{"role": ["user"], "content": "q"}, {"role": "assistant", "content": "a"}]}'],
                     (13, 14)),
    "missing_content": (['{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}'], (13,)),
    "empty_content": ([json.dumps(example("u", answer=""))], (13,)),
    "invalid_content": (['{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]}',
                         '{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}, '
                         '{"role": "assistant", "content": "a"}]}'], (13, 14)),
    "unknown_message_key": (['{"messages": [{"role": "user", "content": "q", "x": 1}, '
                             '{"role": "assistant", "content": "a"}]}'], (13,)),
    "invalid_weight": (['{"messages": [{"role": "user", "content": "q"}, '
                        '{"role": "assistant", "content": "a", "weight": 2}]}'], (13,)),
    "no_assistant": (['{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}'],
                     (13,)),
    "duplicate_example": ([json.dumps(example("item 3")), json.dumps(example("item 3"))], (13, 14)),
    "blank_line": (["", json.dumps(example("after blank"))], (13,)),
    "missing_system": ([json.dumps(example("no system", system=False))], (13,)),
    "missing_user": (['{"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}'],
                     (13,)),
    "consecutive_roles": (['{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, '
                           '{"role": "assistant", "content": "c"}]}'], (13,)),
}


@pytest.mark.parametrize("code", sorted(BAD_LINE))
def test_each_line_check(tmp_path, code):
    extra, lines = BAD_LINE[code]
    report = validate_files([(write(tmp_path, "f.jsonl", good_lines() + extra), "file")])
    found = codes(report)
    assert code in found and found[code] == lines, found
    finding = next(f for f in report.findings if f.code == code)
    assert finding.severity == CHECKS[code][0] and finding.remedy and "\n" not in finding.message
    assert report.ok is (CHECKS[code][0] == "warning")


def test_a_clean_file_has_no_findings_and_trailing_blank_lines_are_fine(tmp_path):
    report = validate_files([(write(tmp_path, "f.jsonl", good_lines() + [""]), "file")])
    assert report.findings == () and report.ok and report.files[0].examples == 12


def test_bom_and_non_utf8(tmp_path):
    data = b"\xef\xbb\xbf" + ("\n".join(good_lines()) + "\n").encode() + b'{"messages": "caf\xe9"}\n'
    found = codes(validate_files([(write(tmp_path, "f.jsonl", data), "file")]))
    assert found["bom"] == (1,) and found["not_utf8"] == (13,)


def test_too_few_examples(tmp_path):
    report = validate_files([(write(tmp_path, "f.jsonl", good_lines(9)), "file")])
    assert codes(report)["too_few_examples"] == (0,) and "(9 found)" in report.findings[0].message


def test_too_many_tokens_uses_the_models_limit(tmp_path):
    long = json.dumps(example("word " * 20_000))
    report = validate_files([(write(tmp_path, "f.jsonl", good_lines() + [long]), "file")],
                            model="gpt-3.5-turbo-0125")  # 16,385 tokens per example
    assert codes(report)["too_many_tokens"] == (13,) and "16,385" in report.findings[0].message
    report = validate_files([(write(tmp_path, "f.jsonl", good_lines() + [long]), "file")])  # 65,536
    assert "too_many_tokens" not in codes(report)


def test_leakage_across_a_pair(tmp_path):
    train = write(tmp_path, "train.jsonl", good_lines(20))
    val = good_lines(12, prefix="other")
    val[2] = json.dumps(example("item 5"))  # exactly a training example
    val[7] = json.dumps(example("item 9", answer="Price is $99.00"))  # same prompt, other answer
    report = validate_files([(train, "train"), (write(tmp_path, "val.jsonl", val), "validation")])
    found = codes(report)
    assert found["leakage_exact"] == (3,) and found["leakage_prompt"] == (8,)
    assert all(f.file.endswith("val.jsonl") for f in report.findings)


def test_token_counts_follow_the_cookbook():
    count, estimated = text_counter("o200k_base")
    assert estimated is None, "TIKTOKEN_CACHE_DIR should point at ../shared/tiktoken-cache"
    messages = example("Hello world")["messages"]
    expected = 3 + sum(3 + count(m["role"]) + count(m["content"]) for m in messages)
    assert count_chat_tokens(messages, count) == expected
    assert count("Hello world") == 2  # o200k_base: "Hello", " world"
    assert count_chat_tokens([{"role": "user", "content": "hi", "name": "bob"}], count) == 3 + 3 + 1 + 1 + 1 + 1


def test_statistics_epochs_and_cost(tmp_path):
    report = validate_files([(write(tmp_path, "t.jsonl", good_lines(40)), "train")], price_per_1m=10.0)
    stats = report.files[0].tokens
    assert stats.examples == 40 and stats.min <= stats.median <= stats.p90 <= stats.max
    assert report.epochs == 3 and report.billable_tokens == stats.total == stats.billable
    assert report.estimated_cost_usd == round(stats.total * 3 * 10.0 / 1e6, 4)
    assert [default_epochs(n) for n in (10, 33, 34, 5000, 8334, 100_000)] == [10, 3, 3, 3, 2, 1]


def test_fallback_estimate_when_the_encoding_cannot_be_loaded(tmp_path):
    code = ("import json, sys; from pathlib import Path; from tasks.validate import validate_files; "
            "r = validate_files([(Path(sys.argv[1]), 'file')]); print(json.dumps([r.token_counts_estimated, "
            "r.files[0].tokens.total]))")
    env = {"PATH": "/usr/bin:/bin", "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"), "HTTPS_PROXY": "http://127.0.0.1:9"}
    path = write(tmp_path, "f.jsonl", good_lines())
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    estimated, total = json.loads(out.stdout.strip().splitlines()[-1])
    assert "could not be loaded" in estimated and "estimates" in estimated and total > 0


@needs_real
@pytest.mark.parametrize("train, val", [("adetayo_fine_tune_train.jsonl", "adetayo_fine_tune_validation.jsonl"),
                                        ("collins_train.jsonl", "collins_val.jsonl")])
def test_real_course_pairs_validate_clean(train, val):
    proc = subprocess.run([str(Path(sys.executable).parent / "ftprep"), "validate", "--train", str(REAL / train),
                           "--validation", str(REAL / val)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid: 0 error(s)" in proc.stdout


@needs_real
@pytest.mark.parametrize("name", ["tope_fine_tune_train.jsonl", "tope_fine_tune_validation.jsonl"])
def test_real_tope_files_fail_on_the_minimum(name):
    proc = subprocess.run([str(Path(sys.executable).parent / "ftprep"), "validate", str(REAL / name), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert [f["code"] for f in report["findings"] if f["severity"] == "error"] == ["too_few_examples"]


def test_reports_render(tmp_path):
    report = validate_files([(write(tmp_path, "f.jsonl", good_lines(5)), "file")])
    assert "NOT valid: 1 error(s)" in render_text(report)
    assert "`too_few_examples`" in render_markdown(report)
