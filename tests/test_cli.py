"""The ``ftprep`` command as a user runs it: exit codes, one-line errors, nothing half-written.

Most cases call ``ftprep.cli.main(argv)`` in this process (:func:`ftprep_main`): the same code path as the
console script, from the same working folder and environment, against the session's Prefect server and OpenAI
stub, with everything the command prints to stdout and stderr (also through Prefect's console log handlers)
captured. A few run the installed ``ftprep`` command as a subprocess, for what only a real process shows: a
success with the key read from ``.env``, a refused malicious pickle and a rejected key.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

FTPREP = str(Path(sys.executable).parent / "ftprep")


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """The ``ftprep`` command in its own process."""
    return subprocess.run([FTPREP, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


@pytest.fixture
def ftprep_main(prefect_server, tmp_path, monkeypatch, capfd) -> Callable[..., subprocess.CompletedProcess]:
    """``ftprep ARGS`` in this process: ``ftprep.cli.main(argv)`` run from ``tmp_path`` with the environment
    plus ``env`` (no OPENAI_* setting unless given), its exit status, stdout and stderr as a CompletedProcess.

    Prefect's console log handlers were made with the stderr of the moment Prefect was imported; they are
    pointed at the captured stderr for the call. Whatever the command changes in the process is undone
    afterwards: the environment (``.env`` loading writes to it), the working folder and the log filters the
    command adds to hide expected tracebacks.
    """
    from ftprep.cli import main

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
    assert sorted(p.name for p in out.iterdir()) == ["fine_tune_train.jsonl", "fine_tune_validation.jsonl",
                                                     "manifest.json"]
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


def make_inputs(tmp_path: Path) -> None:
    import pickle

    (tmp_path / "items.jsonl").write_text(items())
    (tmp_path / "nan.jsonl").write_text(items(r3={"price": float("nan")}))
    (tmp_path / "inf.jsonl").write_text(items(r4={"price": float("inf")}))
    (tmp_path / "negative.jsonl").write_text(items(r5={"price": -1.0}))
    (tmp_path / "empty-text.jsonl").write_text(items(r6={"prompt": "", "title": "", "description": ""}))
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "nocols.csv").write_text("name,cost\nkettle,20\n" * 3)
    (tmp_path / "latin1.csv").write_bytes("prompt,price\ncaf\xe9,1\n".encode("latin-1"))
    (tmp_path / "truncated.pkl").write_bytes(pickle.dumps([{"prompt": PROMPT.format(1), "price": 1.0}] * 30)[:-40])
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([_Evil()]))
    (tmp_path / "bad.toml").write_text('user = "{prompt"\nassistant = "x"\n')
    (tmp_path / "val-overlap.jsonl").write_text(items(3))
    (tmp_path / "blocker").write_text("a file, not a folder")


# The catalogue of bad input: arguments, the message's key words, and whether the files get written
# (only failures at upload come after a complete, validated write; everything else leaves no file).
BAD_INPUTS = [
    (["--data", "missing.pkl"], "missing.pkl does not exist; check the path given to --data"),
    (["--data", "."], "is a directory; give a dataset file"),
    (["--data", "empty.csv"], "empty.csv is empty; give a dataset file with records"),
    (["--data", "truncated.pkl"], "truncated.pkl is not a readable pickle"),
    (["--data", "evil.pkl"], "refused: pickle tries to call posix.system; nothing was run"),
    (["--data", "data.xlsx"], "unknown file type '.xlsx'"),
    (["--data", "nocols.csv", "--train-size", "2", "--validation-size", "1"],
     "template 'course' needs field 'course_question' (made from prompt or"),
    (["--data", "latin1.csv"], "latin1.csv is not UTF-8 text"),
    (["--data", "nan.jsonl", "--train-size", "10", "--validation-size", "5"], "record 3: field 'price' is nan"),
    (["--data", "inf.jsonl", "--train-size", "10", "--validation-size", "5"], "record 4: field 'price' is inf"),
    (["--data", "negative.jsonl", "--train-size", "10", "--validation-size", "5"],
     "record 5: field 'price' is negative (-1.0)"),
    (["--data", "empty-text.jsonl", "--train-size", "10", "--validation-size", "5"],
     "record 6: field 'course_question' is missing"),
    (["--data", "items.jsonl", "--train-size", "500"], "training needs records 0..499 but"),
    (["--data", "items.jsonl", "--train-size", "0"], "--train-size is 0: give a positive number"),
    (["--data", "items.jsonl", "--train-size", "50", "--validation-size", "-2"], "--validation-size is -2"),
    (["--data", "items.jsonl", "--train-size", "10", "--validation-data", "val-overlap.jsonl",
      "--validation-size", "3"], "val-overlap.jsonl shares 3 records with the training records"),
    (["--data", "items.jsonl", "--train-size", "10", "--validation-size", "5", "--out", "blocker/out"],
     "cannot be created"),
    (["--data", "items.jsonl", "--train-size", "10", "--validation-size", "5", "--template", "course-summary"],
     "needs field 'summary'"),
    (["--data", "items.jsonl", "--template", "nope"], "unknown template 'nope'"),
    (["--data", "items.jsonl", "--template", "bad.toml"], "template user is invalid"),
    (["--data", "items.jsonl", "--model", "gpt-9"], "unknown model 'gpt-9'"),
    (["--data", "items.jsonl", "--train-offset", "-1"], "--train-offset: Input should be greater than or equal to 0"),
]


def check_bad_input(proc: subprocess.CompletedProcess, message: str, tmp_path: Path, openai_stub) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert openai_stub.count("POST") == 0
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[m[:40] for _, m in BAD_INPUTS])
def test_bad_input_is_one_clear_line(tmp_path, ftprep_main, openai_stub, args, message):
    make_inputs(tmp_path)
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
                 "FTPREP_RETRY_BASE_SECONDS": "0.05"}, "gave up after 2 attempts")
    return {"OPENAI_API_KEY": "sk-test-wrong", "OPENAI_BASE_URL": openai_stub.base_url}, "HTTP 401"


def check_upload_failure(proc: subprocess.CompletedProcess, message: str, tmp_path: Path, openai_stub) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "sk-test-" not in proc.stdout + proc.stderr
    # the files were complete and valid before the upload failed: nothing partial, nothing temporary
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fine_tune_train.jsonl",
                                                                    "fine_tune_validation.jsonl"]
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
