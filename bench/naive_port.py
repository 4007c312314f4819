"""A naive Prefect port of the course notebook, the baseline of bench/whole_bench.py: five plain tasks.

Written as Prefect's tutorial would: plain ``@task``/``@flow`` with default settings, the notebook's own
``json.dumps`` formatting, one write per file, and the SDK's ``files.create`` for the upload.

    python bench/naive_port.py --data items.pkl --train 500 --validation 50 [--upload]
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

from prefect import flow, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
import course_items  # noqa: E402 - the course's items.Item, for the pickle
from course_items import nb  # noqa: E402 - the notebook's formatting, unchanged

course_items.install()


@task
def load(path: str) -> list:
    with open(path, "rb") as f:
        return pickle.load(f)


@task
def split(items: list, n_train: int, n_validation: int) -> tuple[list, list]:
    return items[:n_train], items[n_train:n_train + n_validation]


@task
def format_items(items: list) -> str:
    return nb.make_jsonl(items)


@task
def write(text: str, path: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


@task
def upload(path: str) -> str:
    from openai import OpenAI

    with open(path, "rb") as f:
        return OpenAI().files.create(file=f, purpose="fine-tune").id


@flow
def naive_prepare(data: str, n_train: int = 500, n_validation: int = 50, out: str = "out-naive",
                  do_upload: bool = False) -> list[str]:
    Path(out).mkdir(parents=True, exist_ok=True)
    train, validation = split(load(data), n_train, n_validation)
    paths = [write(format_items(train), f"{out}/fine_tune_train.jsonl"),
             write(format_items(validation), f"{out}/fine_tune_validation.jsonl")]
    return [upload(p) for p in paths] if do_upload else paths


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--validation", type=int, default=50)
    ap.add_argument("--out", default="out-naive")
    ap.add_argument("--upload", action="store_true")
    a = ap.parse_args()
    print(naive_prepare(a.data, a.train, a.validation, a.out, a.upload))
