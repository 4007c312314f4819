"""Validation benchmark: `ftprep validate` (token counts included, both cores) on the 400,000-example files.

    .venv/bin/python bench/validate_bench.py          # after bench/format_bench.py made bench/out/ftprep/

Prints the validation time next to ftprep's own format+write time for the same files (measured here
again, in-process, best of 3), their ratio, and tiktoken's single-core throughput on the same text,
which bounds how fast any exact token count can be.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def main() -> None:
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken-cache"))
    sys.path.insert(0, str(ROOT))
    from ftprep.models import FormatPlan, SplitConfig
    from tasks.format import PRESETS, template_fields
    from tasks.load import describe, new_store
    from tasks.split import plan_split
    from tasks.write import write_split

    data = OUT / "items-400000.pkl"
    if not data.exists():
        sys.exit(f"{data} is missing: run bench/format_bench.py first")
    store = new_store()
    ref, _ = describe(data, store)
    plan = plan_split(ref, SplitConfig(train_size=399_000, validation_size=1_000))
    fmt = FormatPlan(template=PRESETS["course"], fields=template_fields(PRESETS["course"]), preview="")
    out = OUT / "ftprep"
    times = []
    for _ in range(3):
        t = time.perf_counter()
        files = write_split(plan, fmt, out, store)
        times.append(time.perf_counter() - t)
    write_s = min(times)

    cmd = [str(Path(sys.executable).parent / "ftprep"), "validate", "--train", files.train.path,
           "--validation", files.validation.path]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    validate_s = time.perf_counter() - t
    print(proc.stdout.strip())
    if proc.returncode:
        sys.exit(proc.stderr)

    import itertools

    import orjson

    from ftprep.tokens import text_counter

    count, _ = text_counter("o200k_base")
    with open(files.train.path, "rb") as f:
        texts = [m["content"] for line in itertools.islice(f, 20_000) for m in orjson.loads(line)["messages"]]
    t = time.perf_counter()
    tokens = sum(count(x) for x in texts)
    rate = tokens / (time.perf_counter() - t)

    print(f"\nformat+write of {files.train.examples + files.validation.examples:,} examples (ftprep, in-process, "
          f"best of 3): {write_s:.2f} s")
    print(f"ftprep validate --train --validation (token counts, {os.cpu_count()} cores): {validate_s:.2f} s  "
          f"= {validate_s / write_s:.1f}x format+write")
    print(f"tiktoken o200k_base on one core: {rate / 1e6:.2f} M tokens/s")


if __name__ == "__main__":
    main()
