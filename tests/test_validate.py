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
    # the text names the cost of one epoch (ftprep fine-tune asks for 1 by default) beside OpenAI's default
    from tasks.validation_report import render_text

    line = next(x for x in render_text(report).splitlines() if x.startswith("training: "))
    per_epoch = stats.total * 10.0 / 1e6
    assert f"= about ${per_epoch:,.2f} an epoch (ftprep fine-tune's default: 1 epoch); x 3 epochs, OpenAI's default " \
           f"for this size (--epochs auto), = about ${report.estimated_cost_usd:,.2f}" in line, line


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


# ------------------------------------------------------------------- tools and calls: every billed token counted
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_current_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "description": "The unit of temperature to return",
                 "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}


def test_tool_definitions_are_counted_as_the_cookbook_counts_them():
    from ftprep.tokens import count_function_definitions

    count, _ = text_counter("o200k_base")
    messages = [{"role": "system", "content": "You are a helpful assistant that can answer to questions about the "
                                              "weather."},
                {"role": "user", "content": "What's the weather like in San Francisco?"}]
    # the cookbook's example (How_to_count_tokens_with_tiktoken, section 7): 101 prompt tokens for gpt-4o(-mini)
    assert count_chat_tokens(messages, count) + count_function_definitions([WEATHER_TOOL], count, "o200k_base") == 101
    legacy = [WEATHER_TOOL["function"]]  # the older "functions" list counts the same
    assert count_function_definitions(legacy, count, "o200k_base") == count_function_definitions(
        [WEATHER_TOOL], count, "o200k_base")


def function_calling_example(i: int, arguments: str | None = None) -> dict:
    """One line shaped like the cookbook's function-calling fine-tuning data ("Fine tuning for function calling")."""
    calls = [{"id": f"call_{i}_{k}", "type": "function",
              "function": {"name": "get_current_weather",
                           "arguments": arguments if arguments is not None and k == 0
                           else json.dumps({"location": f"City {i}-{k}", "unit": "celsius"})}}
             for k in range(2)]
    return {"messages": [{"role": "system", "content": "You are a weather assistant. Use the tools."},
                         {"role": "user", "content": f"Weather in City {i}-0 and City {i}-1?"},
                         {"role": "assistant", "content": None, "tool_calls": calls}],
            "tools": [WEATHER_TOOL], "parallel_tool_calls": True}


def test_function_calling_data_counts_tools_and_calls_and_labels_them_estimates(tmp_path):
    from ftprep.tokens import TOOL_ESTIMATE_NOTE

    lines = [json.dumps(function_calling_example(i)) for i in range(12)] + good_lines(3, "plain")
    report = validate_files([(write(tmp_path, "fc.jsonl", lines), "file")])
    assert report.ok, render_text(report)
    stats = report.files[0].tokens
    count, _ = text_counter("o200k_base")
    message_only = count_chat_tokens(function_calling_example(0)["messages"], count)
    assert stats.max > message_only + 80  # the tool definition (~80) and two calls are in the count
    assert stats.estimated == 12 and report.tool_token_estimates == TOOL_ESTIMATE_NOTE
    text, markdown = render_text(report), render_markdown(report)
    assert "(12 examples estimated)" in text and f"note: {TOOL_ESTIMATE_NOTE}" in text
    assert f"> {TOOL_ESTIMATE_NOTE}" in markdown
    as_json = json.loads(report.model_dump_json())
    assert as_json["tool_token_estimates"] == TOOL_ESTIMATE_NOTE and as_json["files"][0]["tokens"]["estimated"] == 12
    plain = validate_files([(write(tmp_path, "plain.jsonl", good_lines()), "file")])
    assert plain.tool_token_estimates is None and plain.files[0].tokens.estimated == 0


def test_300k_tokens_of_tool_arguments_fail_the_limit(tmp_path):
    big = json.dumps({"location": " ".join(f"w{i}" for i in range(150_000))})  # ~300,000 tokens
    lines = [json.dumps(function_calling_example(i)) for i in range(12)]
    lines.append(json.dumps(function_calling_example(99, arguments=big)))
    report = validate_files([(write(tmp_path, "fc.jsonl", lines), "file")])
    assert codes(report)["too_many_tokens"] == (13,)
    assert report.files[0].tokens.max > 250_000  # not 48 tokens of message text


@pytest.mark.parametrize("key", ["tool_calls", "function_call", "tools", "functions"])
def test_the_limit_check_never_under_counts_what_is_estimated(tmp_path, key):
    """Text the cookbook's rule would count low (one token per 3 bytes of CJK, say) still fails: the limit is
    checked against the byte upper bound of the estimated parts."""
    from ftprep.tokens import count_example

    filler = "価格" * 40_000  # 240 KB of UTF-8
    example = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    if key == "tool_calls":
        example["messages"][1]["tool_calls"] = [{"id": "c", "type": "function",
                                                 "function": {"name": "f", "arguments": filler}}]
    elif key == "function_call":
        example["messages"][1]["function_call"] = {"name": "f", "arguments": filler}
    else:
        example[key] = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
            "type": "object",
            "properties": {"x": {"type": "object", "properties": {"deep": {"description": filler}}}}}}}]
    raw = json.dumps(example, ensure_ascii=False).encode()
    count = lambda text: 1  # noqa: E731 - an estimate as wrong as can be
    counted = count_example(example, len(raw), count, "o200k_base", exact=True)
    assert counted.estimated and counted.upper >= len(filler.encode()) > 65_536
    report = validate_files([(write(tmp_path, "f.jsonl", good_lines() + [raw.decode()]), "file")])
    assert codes(report)["too_many_tokens"] == (13,)


def test_without_the_encoding_the_limit_is_checked_against_the_bytes():
    from ftprep.tokens import count_example

    example = {"messages": [{"role": "user", "content": "価" * 30_000}, {"role": "assistant", "content": "a"}]}
    raw = json.dumps(example, ensure_ascii=False).encode()
    estimate = lambda text: (len(text.encode()) + 3) // 4  # noqa: E731 - the fallback: bytes / 4
    counted = count_example(example, len(raw), estimate, "o200k_base", exact=False)
    assert counted.tokens < 30_000 <= len(raw) <= counted.upper


# --------------------------------------------------------------------- files that are not files: one line
def test_a_fifo_a_directory_and_a_socket_are_refused_without_being_opened(tmp_path):
    import os
    import socket
    import threading

    from ftprep.errors import InputError

    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: it must not be opened
    sock_path = tmp_path / "s.jsonl"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    outcome: dict[Path, str] = {}

    def run() -> None:
        for path in (fifo, tmp_path, sock_path, tmp_path / "missing.jsonl"):
            try:
                validate_files([(path, "file")])
            except InputError as e:
                outcome[path] = str(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    sock.close()
    assert not worker.is_alive(), "validate hung"
    assert outcome == {fifo: f"{fifo} is a FIFO (named pipe), not a regular file; give a readable .jsonl file",
                       tmp_path: f"{tmp_path} is a directory; give a readable .jsonl file",
                       sock_path: f"{sock_path} is a socket or device, not a regular file; give a readable .jsonl "
                                  "file",
                       tmp_path / "missing.jsonl": f"{tmp_path / 'missing.jsonl'} does not exist; give a readable "
                                                   ".jsonl file"}
