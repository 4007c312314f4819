"""Make the README's comparison example (docs/img/comparison-stub.png and its table) against the local stub.

Run from the repository root: ``.venv/bin/python scripts/stub_comparison.py``. It makes the 600-item sample
when missing (data/sample/items.pkl), then, in a temporary folder with its own PREFECT_HOME (Prefect's
temporary server) and the OpenAI stub (tests/openai_stub.py) on 127.0.0.1: ``ftprep prepare`` on the sample,
``ftprep fine-tune`` (the stub's job), and ``ftprep evaluate`` with no ``--model`` (the fine-tuned model, its
base and the baseline) on the sample's 50 held-out items (the records after the 500 training and 50 validation
ones), printing the comparison table and copying the chart to docs/img/comparison-stub.png.
The stub's answers are made up: it is told each test item's price and answers it off by a deterministic
pseudo-random share, up to 25% for a fine-tuned model and up to 60% for a base model, so the figures show
what the report looks like, not how any OpenAI model does. Needs no network and no API key.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "items.pkl"
IMAGE = ROOT / "docs" / "img" / "comparison-stub.png"


def main() -> int:
    sys.path.insert(0, str(ROOT))
    if not SAMPLE.is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "sample.py"), "--n", "600", "--seed", "42", "--out",
                        str(SAMPLE)], check=True)
    from tasks.evaluate import prompt_messages
    from tasks.format import PRESETS
    from tasks.load import read_records
    from tests.openai_stub import StubOpenAI

    prices = {prompt_messages(PRESETS["course"], r, i)[-1]["content"]: r["price"]
              for i, r in enumerate(read_records(SAMPLE))}

    def made_up(messages: list[dict], model: str) -> str:
        kind, spread = ("fine-tuned", 0.25) if model.startswith("ft:") else ("base", 0.6)
        text = messages[-1]["content"]
        share = int(hashlib.sha256(f"{kind}\n{text}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF * 2 - 1
        return f"Price is ${prices[text] * (1 + spread * share):,.2f}"

    ftprep = str(Path(sys.executable).parent / "ftprep")
    with tempfile.TemporaryDirectory(prefix="ftprep-comparison-") as tmp, StubOpenAI() as stub:
        stub.chat_reply = made_up
        held_out = Path(tmp) / "held-out.pkl"  # never trained on: prepare's default split takes records 0..549
        held_out.write_bytes(pickle.dumps([dict(r) for r in read_records(SAMPLE)[550:]]))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PREFECT_API"))}
        env |= {"PREFECT_HOME": str(Path(tmp) / "prefect"), "OPENAI_API_KEY": stub.api_key,
                "OPENAI_BASE_URL": stub.base_url, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        for args in (["prepare", "--data", str(SAMPLE), "--out", "out"], ["fine-tune", "--poll-seconds", "0.05"],
                     ["evaluate", "--data", str(held_out), "--n", "50"]):
            done = subprocess.run([ftprep, *args], cwd=tmp, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
                return done.returncode
        print(done.stdout, end="")
        shutil.copyfile(Path(tmp) / "eval" / "comparison.png", IMAGE)
    print(f"copied the chart to {IMAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
