"""The ``ftprep`` command as a user runs it: exit codes, one-line errors, nothing half-written.

Most cases call ``cli.main.main(argv)`` in this process (:func:`ftprep_main`): the same code path as the
console script, from the same working folder and environment, against the session's Prefect server and OpenAI
stub, with everything the command prints to stdout and stderr (also through Prefect's console log handlers)
captured. A few run the installed ``ftprep`` command as a subprocess, for what only a real process shows: a
success with the key read from ``.env``, a refused malicious pickle and a rejected key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

FTPREP = str(Path(sys.executable).parent / "ftprep")


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """The ``ftprep`` command in its own process."""
    return subprocess.run([FTPREP, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


@pytest.fixture
def ftprep_main(prefect_server, tmp_path, monkeypatch, capfd) -> Callable[..., subprocess.CompletedProcess]:
    """``ftprep ARGS`` in this process: ``cli.main.main(argv)`` run from ``tmp_path`` with the environment
    plus ``env`` (no OPENAI_* setting unless given), its exit status, stdout and stderr as a CompletedProcess.

    Prefect's console log handlers were made with the stderr of the moment Prefect was imported; they are
    pointed at the captured stderr for the call. Whatever the command changes in the process is undone
    afterwards: the environment (``.env`` loading writes to it), the working folder and the log filters the
    command adds to hide expected tracebacks.
    """
    from prefect.settings import PREFECT_API_URL

    from cli.main import main

    monkeypatch.chdir(tmp_path)
    handlers = {h for name in (None, *logging.root.manager.loggerDict)
                for h in getattr(logging.getLogger(name), "handlers", ())}
    streams = [h for h in handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]

    def call(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        saved_env = dict(os.environ)
        saved_filters = {h: list(h.filters) for h in handlers}
        for name in [k for k in os.environ if k.startswith("OPENAI_")]:
            del os.environ[name]
        os.environ.update(env or {})
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the session's server: no temporary one
        capfd.readouterr()
        with monkeypatch.context() as m:
            for h in streams:
                m.setattr(h, "stream", sys.stderr)
                if hasattr(h, "console"):
                    m.setattr(h.console, "file", sys.stderr)
            try:
                code = main(list(args))
            except SystemExit as e:  # argument parsers exit; the console script would too
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            finally:
                os.environ.clear()
                os.environ.update(saved_env)
                for h, filters in saved_filters.items():
                    h.filters[:] = filters
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(["ftprep", *args], code, out, err)

    return call


def test_prepare_without_key_writes_files_and_says_how_to_upload(tmp_path, ftprep_main, sample_pickle):
    proc = ftprep_main(["prepare", "--data", str(sample_pickle), "--out", "out"])
    assert proc.returncode == 0, proc.stderr
    assert "upload skipped: OPENAI_API_KEY is not set" in proc.stdout
    assert "Put OPENAI_API_KEY=sk-... in the environment or in .env" in proc.stdout
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "fine_tune_train.jsonl", "fine_tune_validation.jsonl", "manifest.json", "targets.png", "tokens.png"]
    assert len((out / "fine_tune_train.jsonl").read_text().splitlines()) == 500


def test_prepare_uploads_with_key_from_dotenv(tmp_path, cli_env, sample_pickle, openai_stub):
    """A subprocess: the key comes from .env in the working folder, as for a user, and never from this process."""
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={openai_stub.api_key}\nOPENAI_BASE_URL={openai_stub.base_url}\n")
    proc = run(["prepare", "--data", str(sample_pickle), "--train-size", "40", "--validation-size", "10"],
               cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    ids = {f.id for f in openai_stub.files_for("fine-tune")}
    assert len(ids) == 2 and all(i in proc.stdout for i in ids)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {f["id"] for f in manifest["uploaded"]} == ids
    assert openai_stub.api_key not in proc.stdout + proc.stderr + json.dumps(manifest)


PROMPT = "How much does this cost to the nearest dollar?\n\nThing {}\n\nPrice is $3.00"


def items(n: int = 20, **overrides) -> str:
    """JSONL course items; overrides maps a record position to the fields it changes."""
    rows = [{"prompt": PROMPT.format(i), "price": 3.0 + i} | overrides.get(f"r{i}", {}) for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def pickled_items(n: int = 20, **overrides) -> bytes:
    import pickle

    rows = [{"prompt": PROMPT.format(i), "price": Decimal(3 + i)} | overrides.get(f"r{i}", {}) for i in range(n)]
    return pickle.dumps(rows)


def make_inputs(tmp_path: Path) -> None:
    import pickle

    (tmp_path / "items.jsonl").write_text(items())
    (tmp_path / "nan.jsonl").write_text(items(r3={"price": float("nan")}))
    (tmp_path / "inf.jsonl").write_text(items(r4={"price": float("inf")}))
    (tmp_path / "negative.jsonl").write_text(items(r5={"price": -1.0}))
    (tmp_path / "empty-text.jsonl").write_text(items(r6={"prompt": "", "title": "", "description": ""}))
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "nocols.csv").write_text("name,cost\n" + "kettle,20\n" * 30)
    (tmp_path / "latin1.csv").write_bytes("prompt,price\ncaf\xe9,1\n".encode("latin-1"))
    (tmp_path / "truncated.pkl").write_bytes(pickle.dumps([{"prompt": PROMPT.format(1), "price": 1.0}] * 30)[:-40])
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([_Evil()]))
    (tmp_path / "bad.toml").write_text('user = "{prompt"\nassistant = "x"\n')
    (tmp_path / "val-overlap.jsonl").write_text(items(10))
    (tmp_path / "blocker").write_text("a file, not a folder")
    # issue 10, section 3: every type a loader produces passes the same numeric check
    (tmp_path / "decimal-nan.pkl").write_bytes(pickled_items(r3={"price": Decimal("NaN")}))
    (tmp_path / "decimal-negative.pkl").write_bytes(pickled_items(r5={"price": Decimal("-5.00")}))
    (tmp_path / "bool.jsonl").write_text(items(r2={"price": True}))
    (tmp_path / "huge-int.jsonl").write_text(items(r7={"price": 10**400}))
    (tmp_path / "text-price.csv").write_text("prompt,price\n" + "".join(
        f'"{PROMPT.format(i)}",{"cheap" if i == 4 else i + 1}\n' for i in range(20)))
    # section 4: no input can crash a run
    lines = items().splitlines(keepends=True)
    (tmp_path / "surrogate.jsonl").write_text("".join(lines[:3]) + '{"prompt": "Thing \\ud800", "price": 1}\n')
    (tmp_path / "nested.jsonl").write_text("".join(lines[:3]) + '{"prompt": "x", "price": ' + "[" * 100_000
                                           + "]" * 100_000 + "}\n")
    (tmp_path / "bytearray.pkl").write_bytes(b"\x80\x02c__builtin__\nbytearray\nJ\x00\x00\x00\x7f\x85R.")
    (tmp_path / "build.pkl").write_bytes(b"\x80\x02c_codecs\nencode\nN}X\x0c\x00\x00\x00__defaults__(X\x06\x00\x00"
                                         b"\x00utf-16ts\x86b0].")
    (tmp_path / "surrogate.pkl").write_bytes(pickle.dumps([{"prompt": PROMPT.format(i).replace("Thing", "\ud800"),
                                                            "price": 1.0} for i in range(20)]))
    (tmp_path / "wide.toml").write_text('user = "{prompt}"\nassistant = "{price:999999999.2f}"\n')
    (tmp_path / "many.jsonl").write_text(items(3000))
    os.mkfifo(tmp_path / "fifo.jsonl")


# The catalogue of bad input: arguments, the message's key words, and whether the files get written
# (only failures at upload come after a complete, validated write; everything else leaves no file).
BAD_INPUTS = [
    (["--data", "missing.pkl"], "missing.pkl does not exist; check the path given to --data"),
    (["--data", "."], "is a directory; give a dataset file (.pkl, .csv, .jsonl or .parquet) to --data"),
    (["--data", "empty.csv"], "empty.csv is empty; give a dataset file with records to --data"),
    (["--data", "truncated.pkl"], "truncated.pkl is not a readable pickle"),
    (["--data", "evil.pkl"], "refused: pickle tries to call posix.system; nothing was run"),
    (["--data", "data.xlsx"], "unknown file type '.xlsx'"),
    (["--data", "nocols.csv", "--train-size", "10", "--validation-size", "10"],
     "template 'course' needs field 'course_question' (made from prompt or"),
    (["--data", "latin1.csv"], "latin1.csv is not UTF-8 text"),
    (["--data", "nan.jsonl", "--train-size", "10", "--validation-size", "10"], "record 3: field 'price' is NaN"),
    (["--data", "inf.jsonl", "--train-size", "10", "--validation-size", "10"], "record 4: field 'price' is infinite"),
    (["--data", "negative.jsonl", "--train-size", "10", "--validation-size", "10"],
     "record 5: field 'price' is negative (-1.0)"),
    (["--data", "empty-text.jsonl", "--train-size", "10", "--validation-size", "10"],
     "record 6: field 'title' is missing or empty, and the record has no prompt to use instead"),
    (["--data", "items.jsonl", "--train-size", "500"], "training and validation need records 0..549 (500 + 50) but"),
    (["--data", "items.jsonl", "--train-size", "0"], "--train-size: Input should be greater than or equal to 10"),
    (["--data", "items.jsonl", "--train-size", "50", "--validation-size", "-2"],
     "--validation-size: Input should be greater than or equal to 0"),
    (["--data", "items.jsonl", "--train-size", "10", "--validation-size", "3"],
     "split.validation_size (--validation-size) is 3: OpenAI needs at least 10 examples in a validation file"),
    (["--data", "items.jsonl", "--train-size", "10", "--validation-data", "val-overlap.jsonl",
      "--validation-size", "10"], "val-overlap.jsonl shares 10 records with the training records"),
    (["--data", "items.jsonl", "--train-size", "10", "--validation-size", "10", "--out", "blocker/out"],
     "cannot be created"),
    (["--data", "items.jsonl", "--train-size", "10", "--validation-size", "10", "--template", "course-summary"],
     "needs field 'summary'"),
    (["--data", "items.jsonl", "--template", "nope"], "unknown template 'nope' (--template)"),
    (["--data", "items.jsonl", "--shuffle", "maybe"],
     "unexpected argument 'maybe' (an on/off option such as --shuffle"),
    (["--data", "items.jsonl", "--template", "bad.toml"], "template user is invalid"),
    (["--data", "items.jsonl", "--model", "gpt-9"], "unknown model 'gpt-9'"),
    (["--data", "items.jsonl", "--train-offset", "-1"], "--train-offset: Input should be greater than or equal to 0"),
    # issue 10, section 3: one numeric check whatever type the loader produced
    (["--data", "decimal-nan.pkl", "--train-size", "10", "--validation-size", "10"], "record 3: field 'price' is NaN"),
    (["--data", "decimal-negative.pkl", "--train-size", "10", "--validation-size", "10"],
     "record 5: field 'price' is negative (-5.00)"),
    (["--data", "bool.jsonl", "--train-size", "10", "--validation-size", "10"],
     "record 2: field 'price' is a boolean (True), not a number"),
    (["--data", "huge-int.jsonl", "--train-size", "10", "--validation-size", "10"],
     "record 7: field 'price' is 100000000000…(401 digits), beyond the bound of 1e+12"),
    (["--data", "text-price.csv", "--train-size", "10", "--validation-size", "10"],
     "record 4: field 'price' is 'cheap', not a number"),
    # section 4: no input can crash a run
    (["--data", "surrogate.jsonl"], "surrogate.jsonl:4 holds text that is not valid Unicode (a lone surrogate"),
    (["--data", "nested.jsonl"], "nested.jsonl:4 nests JSON arrays or objects too deeply"),
    (["--data", "bytearray.pkl"], "refused: pickle asks for a bytearray of 2,130,706,432 bytes"),
    (["--data", "build.pkl"], "refused: pickle tries to set state on _codecs.encode; nothing was run"),
    (["--data", "surrogate.pkl", "--train-size", "10", "--validation-size", "10"],
     "field 'course_question' holds text that is not valid Unicode"),
    (["--data", "items.jsonl", "--template", "wide.toml"], "width or precision 999999999 is too large"),
    (["--data", "fifo.jsonl"], "fifo.jsonl is a FIFO (named pipe), not a regular file"),
    (["--data", "many.jsonl", "--train-size", "2500", "--validation-size", "500", "--out", "full/out"],
     "No space left on device (errno ENOSPC); free some space or choose another --out"),
]


def check_bad_input(proc: subprocess.CompletedProcess, message: str, tmp_path: Path, openai_stub) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for out in (tmp_path / "out", tmp_path / "full" / "out"):  # nothing written, no temporary file left
        assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()], list(out.rglob("*"))
    assert openai_stub.count("POST") == 0
    assert not (tmp_path / "pwned").exists()


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "64k") -> Iterator[None]:
    """A tiny tmpfs at ``folder``, so writing fills the disk for real (root only; otherwise the test skips)."""
    folder.mkdir()
    if os.getuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs root to mount a small tmpfs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[m[:40] for _, m in BAD_INPUTS])
def test_bad_input_is_one_clear_line(tmp_path, ftprep_main, openai_stub, args, message):
    make_inputs(tmp_path)
    with small_disk(tmp_path / "full") if "full/out" in args else contextlib.nullcontext():
        proc = ftprep_main(["prepare", *args], {"OPENAI_API_KEY": openai_stub.api_key,
                                                "OPENAI_BASE_URL": openai_stub.base_url})
        check_bad_input(proc, message, tmp_path, openai_stub)


def test_malicious_pickle_is_refused_by_the_command(tmp_path, cli_env, openai_stub):
    """The bad-input case a real process matters most for: a pickle that would run a command must not run it."""
    make_inputs(tmp_path)
    env = dict(cli_env, OPENAI_API_KEY=openai_stub.api_key, OPENAI_BASE_URL=openai_stub.base_url)
    proc = run(["prepare", "--data", "evil.pkl"], env, tmp_path)
    check_bad_input(proc, "refused: pickle tries to call posix.system; nothing was run", tmp_path, openai_stub)


def upload_failure_env(case: str, openai_stub) -> tuple[dict[str, str], str]:
    if case == "unreachable":
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
        return ({"OPENAI_API_KEY": "sk-test-any", "OPENAI_BASE_URL": url, "FTPREP_UPLOAD_RETRIES": "1",
                 "FTPREP_RETRY_BASE_SECONDS": "0.05"},
                f"gave up after 2 attempts: check that {url.removesuffix('/v1')} is the right address "
                "(OPENAI_BASE_URL)")
    return {"OPENAI_API_KEY": "sk-test-wrong", "OPENAI_BASE_URL": openai_stub.base_url}, "HTTP 401"


def check_upload_failure(proc: subprocess.CompletedProcess, message: str, tmp_path: Path, openai_stub) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "sk-test-" not in proc.stdout + proc.stderr
    # the files were complete and valid before the upload failed, but nothing is committed: the next run
    # reuses their generation; nothing partial, nothing temporary
    out = tmp_path / "out"
    assert [p.name for p in out.iterdir()] == [".ftprep"] and not (out / "manifest.json").exists()
    (generation,) = [p for p in (out / ".ftprep").iterdir() if p.name.startswith("gen-")]
    assert sorted(p.name for p in generation.iterdir() if not p.name.startswith(".")) == [
        "fine_tune_train.jsonl", "fine_tune_validation.jsonl", "targets.png", "tokens.png"]
    assert openai_stub.files_for() == []


UPLOAD_ARGS = ["prepare", "--data", "items.jsonl", "--train-size", "10", "--validation-size", "10"]


@pytest.mark.parametrize("case", ["unreachable", "rejected key"])
def test_upload_failures_are_one_clear_line(tmp_path, ftprep_main, openai_stub, case):
    make_inputs(tmp_path)
    env, message = upload_failure_env(case, openai_stub)
    check_upload_failure(ftprep_main(UPLOAD_ARGS, env), message, tmp_path, openai_stub)


def test_rejected_key_is_one_clear_line_from_the_command(tmp_path, cli_env, openai_stub):
    """An error raised inside a Prefect task run, as a real process prints it: Prefect's own logging included."""
    make_inputs(tmp_path)
    env, message = upload_failure_env("rejected key", openai_stub)
    check_upload_failure(run(UPLOAD_ARGS, dict(cli_env, **env), tmp_path), message, tmp_path, openai_stub)


def function_calling_line(i: int, arguments: str) -> str:
    """A line shaped like the cookbook's function-calling fine-tuning data: system, tools, parallel tool calls."""
    tool = {"type": "function", "function": {"name": "lookup_price", "description": "Look up an item's price.",
                                             "parameters": {"type": "object", "properties": {
                                                 "item": {"type": "string", "description": "The item."}}}}}
    calls = [{"id": f"call_{i}_{k}", "type": "function", "function": {"name": "lookup_price", "arguments": arguments}}
             for k in range(2)]
    return json.dumps({"messages": [{"role": "system", "content": "You look up prices."},
                                    {"role": "user", "content": f"Prices of item {i} and its case?"},
                                    {"role": "assistant", "content": None, "tool_calls": calls}],
                       "tools": [tool], "parallel_tool_calls": True}) + "\n"


# ``ftprep validate``: (how to make the argument, exit code, the line expected). Never hangs (timeout).
VALIDATE_BAD_INPUTS = [
    ("validation alone", 2, "--validation needs --train: they are checked as a pair"),
    ("fifo", 2, "fifo.jsonl is a FIFO (named pipe), not a regular file; give a readable .jsonl file"),
    ("directory", 2, "is a directory; give a readable .jsonl file"),
    ("unreadable", 2, "unreadable.jsonl is not readable (Permission denied); give a readable .jsonl file"),
    ("tool arguments of ~300,000 tokens", 1, "error: [too_many_tokens] tools.jsonl line 13: example is over"),
]


@pytest.mark.parametrize("case, code, message", VALIDATE_BAD_INPUTS, ids=[c for c, _, _ in VALIDATE_BAD_INPUTS])
def test_validate_bad_input(tmp_path, case, code, message):
    command = [FTPREP, "validate"]
    if case == "fifo":
        os.mkfifo(tmp_path / "fifo.jsonl")
        command.append(str(tmp_path / "fifo.jsonl"))
    elif case == "directory":
        command.append(str(tmp_path))
    elif case == "validation alone":
        (tmp_path / "v.jsonl").write_text(chat_lines(20))
        command += ["--validation", str(tmp_path / "v.jsonl")]
    elif case == "unreadable":
        path = tmp_path / "unreadable.jsonl"
        path.write_text(items())
        path.chmod(0)
        command.append(str(path))
        if os.getuid() == 0:  # root reads anything: drop the capabilities that allow it
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot make a file unreadable")
            command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    else:
        big = json.dumps({"item": " ".join(f"w{i}" for i in range(150_000))})
        path = tmp_path / "tools.jsonl"
        path.write_text("".join(function_calling_line(i, json.dumps({"item": f"item {i}"})) for i in range(12))
                        + function_calling_line(99, big))
        command.append(str(path))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    if code == 2:
        assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr
    else:
        assert message in proc.stdout and "counted as estimates" in proc.stdout, proc.stdout


@pytest.mark.parametrize("args, line", [
    (["fine-tune", "--max-cost", "-1"], "error: --max-cost: Input should be greater than or equal to 0 (got -1.0)"),
    (["fine-tune", "--poll-seconds", "-1"], "error: --poll-seconds: Input should be greater than 0 (got -1.0)"),
    (["fine-tune", "--job-timeout", "0"], "error: --job-timeout: Input should be greater than 0 (got 0.0)"),
    (["fine-tune", "--epochs", "0"],
     "error: --epochs: Input should be greater than or equal to 1, or input should be 'auto' (got '0')"),
    (["evaluate", "--data", "x.pkl", "--concurrency", "0"],
     "error: --concurrency: Input should be greater than or equal to 1 (got 0)"),
])
def test_an_option_outside_its_range_is_named(ftprep_main, args, line):
    """A flow parameter's own constraint (not a settings model's field) names the option it refused."""
    proc = ftprep_main(args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [f"{line}; see ftprep {args[0]} --help"], proc.stderr


def test_list_options_have_no_empty_flags():
    """cyclopts would add ``--empty-files`` and ``--empty-model`` (set the list empty): a list left out is empty."""
    help_texts = [subprocess.run([FTPREP, command, "--help"], capture_output=True, text=True, timeout=60).stdout
                  for command in ("validate", "evaluate")]
    assert "--files" in help_texts[0] and "--model" in help_texts[1]
    assert not [text for text in help_texts if "--empty-" in text]


def test_an_unknown_command_points_to_the_help_that_exists(ftprep_main):
    proc = ftprep_main(["bogus"])
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("Available commands: prepare, validate, fine-tune, evaluate, serve, notify; "
                                        "see ftprep --help"), proc.stderr


def chat_lines(n: int, duplicate: bool = False) -> str:
    lines = [json.dumps({"messages": [{"role": "system", "content": "Price items."},
                                      {"role": "user", "content": f"Item {i}?"},
                                      {"role": "assistant", "content": f"Price is ${i}.00"}]}) + "\n" for i in range(n)]
    return "".join(lines + lines[:1] if duplicate else lines)


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
def test_a_reader_that_stops_early_ends_the_output_not_the_command(tmp_path, valid):
    """``ftprep validate --json FILE | true``: the reader closes the pipe without reading (``head -1`` does after its
    line). The command's exit status is still the report's (0 valid, 1 invalid), with nothing on stderr (before: a
    BrokenPipeError traceback and 1)."""
    path = tmp_path / "examples.jsonl"
    path.write_text(chat_lines(40, duplicate=not valid))
    proc = subprocess.Popen([FTPREP, "validate", "--json", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the report, written later, meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == (0 if valid else 1), err
    assert err == ""


def test_the_commands_output_passes_the_redaction_layer(capsys):
    """Every line a command prints on stdout (the evaluate summary names --data, which may be a URL with a password)."""
    from cli import emit

    emit("50 items of s3://user:hunter2@bucket/test.pkl; sk-test-made-up-for-this-test")
    out = capsys.readouterr().out
    assert "hunter2" not in out and "made-up" not in out and out.startswith("50 items of s3://")


def test_the_ctrl_c_line_names_what_the_command_may_leave_behind():
    from cli import interrupted

    assert interrupted("validate") == "interrupted: stopped; requests in flight were cancelled"
    assert "a file being uploaded may have been stored" in interrupted("prepare")
    assert "fine-tuning job" not in interrupted("prepare")
    assert interrupted("fine-tune") == ("interrupted: stopped; requests in flight were cancelled; a fine-tuning job "
                                        "this run started is cancelled, unless another run follows it or "
                                        "--no-cancel-job-on-cancel was given")


def test_a_command_leaves_without_teardown_only_after_the_server_has_its_whole_run(tmp_path, cli_env, sample_pickle):
    """The process skips freeing its heap at exit (``cli.main._leave_without_teardown``), but only after Prefect's
    exit handlers have sent every log and event: the server ends up with the run's last lines and states."""
    import time

    from prefect import get_client

    from tests.prefect_api import run_logs, run_task_runs

    # the console script, with an exit handler of its own registered before it: the last to run, were the heap
    # torn down as usual; the command's process leaves before it would run
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('torn down', file=sys.stderr))\n"
              "from cli.main import run\n"
              "sys.argv[0] = 'ftprep'\n"
              "run()\n")
    proc = subprocess.run([sys.executable, "-c", script, "prepare", "--data", str(sample_pickle), "--train-size",
                           "40", "--validation-size", "10", "--no-upload", "--json"], env=cli_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "torn down" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout)  # all of stdout, flushed before the process left
    assert result["files"]["train"]["examples"] == 40
    with get_client(sync_client=True) as client:
        (flow_run,) = client.read_flow_runs(sort="START_TIME_DESC", limit=1)
        deadline = time.monotonic() + 30
        while True:
            messages = [log.message for log in run_logs(client, flow_run.id)]
            states = sorted({t.state.name for t in run_task_runs(client, flow_run.id) if t.state})
            if "Finished in state Completed()" in messages and states == ["Completed"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert flow_run.state.name == "Completed"
    assert "Finished in state Completed()" in messages and any(m.startswith("Committed ") for m in messages)
    assert states == ["Completed"]
    # an expected error leaves the same way, with its exit code and its one line
    proc = subprocess.run([sys.executable, "-c", script, "prepare", "--data", str(tmp_path / "missing.pkl")],
                          env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "torn down" not in proc.stderr


def test_validate_keeps_a_url_whole(ftprep_main, monkeypatch):
    """``--train s3://...`` names the object, not a local path ``s3:/...`` (a Path option would fold the ``//``)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    proc = ftprep_main(["validate", "--train", "s3://bucket/train.jsonl"])
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: s3://bucket/train.jsonl: no credentials for s3://"), proc.stderr
