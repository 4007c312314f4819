"""The ``ftprep`` command as a user runs it: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json
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


BAD_INPUTS = [
    (["--data", "missing.pkl"], "missing.pkl does not exist; check the path given to --data"),
    (["--data", "."], "is a directory; give a dataset file"),
    (["--data", "data.xlsx"], "unknown file type '.xlsx'"),
    (["--data", "items.jsonl", "--template", "nope"], "unknown template 'nope'"),
    (["--data", "items.jsonl", "--train-size", "0"], "--train-size is 0: give a positive number"),
    (["--data", "items.jsonl", "--train-size", "50", "--validation-size", "-2"], "--validation-size is -2"),
    (["--data", "items.jsonl", "--train-size", "500"], "training needs records 0..499 but"),
    (["--data", "items.jsonl", "--train-size", "10", "--validation-size", "5", "--template", "course-summary"],
     "needs field 'summary'"),
    (["--data", "nan.jsonl", "--train-size", "10", "--validation-size", "5"], "record 3: field 'price' is nan"),
    (["--data", "items.jsonl", "--train-size", "10", "--validation-size", "5", "--out", "blocker/out"],
     "cannot be created"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[m[:30] for _, m in BAD_INPUTS])
def test_bad_input_is_one_clear_line(tmp_path, cli_env, openai_stub, args, message):
    prompt = "How much does this cost to the nearest dollar?\n\nThing\n\nPrice is $3.00"
    (tmp_path / "items.jsonl").write_text("".join(json.dumps({"prompt": prompt, "price": 3.0}) + "\n"
                                                  for _ in range(20)))
    (tmp_path / "nan.jsonl").write_text("".join(
        json.dumps({"prompt": prompt, "price": float("nan") if i == 3 else 3.0}) + "\n" for i in range(20)))
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    (tmp_path / "blocker").write_text("a file, not a folder")
    cli_env = dict(cli_env, OPENAI_API_KEY=openai_stub.api_key, OPENAI_BASE_URL=openai_stub.base_url)
    proc = run(["prepare", *args], cli_env, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert openai_stub.count("POST") == 0
