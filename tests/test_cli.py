"""The ``ftprep`` command as a user runs it: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

FTPREP = str(Path(sys.executable).parent / "ftprep")


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([FTPREP, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def test_prepare_without_key_writes_files_and_says_how_to_upload(tmp_path, cli_env, sample_pickle):
    proc = run(["prepare", "--data", str(sample_pickle), "--out", "out"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "upload skipped: OPENAI_API_KEY is not set" in proc.stdout
    assert "Put OPENAI_API_KEY=sk-... in the environment or in .env" in proc.stdout
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["fine_tune_train.jsonl", "fine_tune_validation.jsonl",
                                                     "manifest.json"]
    assert len((out / "fine_tune_train.jsonl").read_text().splitlines()) == 500


def test_prepare_uploads_with_key_from_dotenv(tmp_path, cli_env, sample_pickle, openai_stub):
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


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[m[:40] for _, m in BAD_INPUTS])
def test_bad_input_is_one_clear_line(tmp_path, cli_env, openai_stub, args, message):
    make_inputs(tmp_path)
    cli_env = dict(cli_env, OPENAI_API_KEY=openai_stub.api_key, OPENAI_BASE_URL=openai_stub.base_url)
    proc = run(["prepare", *args], cli_env, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert openai_stub.count("POST") == 0
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("case", ["unreachable", "rejected key"])
def test_upload_failures_are_one_clear_line(tmp_path, cli_env, openai_stub, case):
    make_inputs(tmp_path)
    if case == "unreachable":
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
        env = dict(cli_env, OPENAI_API_KEY="sk-test-any", OPENAI_BASE_URL=url, FTPREP_UPLOAD_RETRIES="1",
                   FTPREP_RETRY_BASE_SECONDS="0.05")
        message = "gave up after 2 attempts"
    else:
        env = dict(cli_env, OPENAI_API_KEY="sk-test-wrong", OPENAI_BASE_URL=openai_stub.base_url)
        message = "HTTP 401"
    proc = run(["prepare", "--data", "items.jsonl", "--train-size", "10", "--validation-size", "10"], env, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "sk-test-" not in proc.stdout + proc.stderr
    # the files were complete and valid before the upload failed: nothing partial, nothing temporary
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fine_tune_train.jsonl",
                                                                    "fine_tune_validation.jsonl"]
    assert openai_stub.files_for() == []
