"""Format+write benchmark: the course notebook's path against ftprep, on N course-shaped items.

    .venv/bin/python bench/format_bench.py            # 400,000 items: 399,000 train + 1,000 validation
    .venv/bin/python bench/format_bench.py --n 50000  # quicker

Each side runs in its own process on the same pickle (made once by ``scripts/sample.py`` and kept in
bench/out/). Printed: format+write seconds of each side (best of --repeat runs), the ratio, RSS after
loading, peak RSS during format+write (sampled every 5 ms), and the wall time and peak RSS of a whole
``ftprep prepare --no-upload``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PY = sys.executable

_SAMPLER = """
import os, threading, time
_PAGE = os.sysconf("SC_PAGE_SIZE")
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 1e6
class Peak:
    def __enter__(self):
        self.peak, self._stop = rss_mb(), False
        self._t = threading.Thread(target=self._run, daemon=True); self._t.start(); return self
    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, rss_mb()); time.sleep(0.005)
    def __exit__(self, *exc):
        self._stop = True; self._t.join(); self.peak = max(self.peak, rss_mb())
"""

REFERENCE = _SAMPLER + """
import json, pickle, sys, time
sys.path.insert(0, {root!r} + "/bench")
import course_items
from course_items import nb
course_items.install()
with open({data!r}, "rb") as f:
    items = pickle.load(f)
loaded = rss_mb()
train, validation = items[:{n_train}], items[{n_train}:{n_train} + {n_val}]
times = []
with Peak() as peak:
    for _ in range({repeat}):
        t0 = time.perf_counter()
        nb.write_jsonl(train, {out!r} + "/fine_tune_train.jsonl")
        nb.write_jsonl(validation, {out!r} + "/fine_tune_validation.jsonl")
        times.append(time.perf_counter() - t0)
print(json.dumps({{"seconds": min(times), "all": times, "loaded_mb": loaded, "peak_mb": peak.peak}}))
"""

FTPREP = _SAMPLER + """
import json, sys, time
from pathlib import Path
from ftprep.models import SplitConfig
from tasks.format import PRESETS, check_fields, compile_template, template_fields
from tasks.load import describe, new_store
from tasks.split import plan_split
from tasks.write import write_split
from ftprep.models import FormatPlan
store = new_store()
ref, _ = describe({data!r}, store)
loaded = rss_mb()
plan = plan_split(ref, SplitConfig(train_size={n_train}, validation_size={n_val}))
template = PRESETS["course"]
times = []
with Peak() as peak:
    for _ in range({repeat}):
        t0 = time.perf_counter()
        check_fields(template, ref)
        fmt = FormatPlan(template=template, fields=template_fields(template), preview="")
        files = write_split(plan, fmt, Path({out!r}), store)
        times.append(time.perf_counter() - t0)
print(json.dumps({{"seconds": min(times), "all": times, "loaded_mb": loaded, "peak_mb": peak.peak}}))
"""


def run_json(code: str) -> dict:
    out = subprocess.run([PY, "-c", textwrap.dedent(code)], cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400_000)
    ap.add_argument("--validation", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side; the best is reported")
    ap.add_argument("--skip-cli", action="store_true", help="skip the whole `ftprep prepare` run")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.scratch import one_folder

    one_folder()
    n_train, n_val = args.n - args.validation, args.validation
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / f"items-{args.n}.pkl"
    if not data.exists():
        from scripts.sample import write_pickle

        t = time.perf_counter()
        write_pickle(data, args.n)
        print(f"made {data} ({data.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
    ref_out, ft_out = OUT / "reference", OUT / "ftprep"
    ref_out.mkdir(exist_ok=True)
    params = dict(root=str(ROOT), data=str(data), n_train=n_train, n_val=n_val, repeat=args.repeat)
    ref = run_json(REFERENCE.format(out=str(ref_out), **params))
    ours = run_json(FTPREP.format(out=str(ft_out), **params))
    print(f"items: {args.n:,} ({n_train:,} train + {n_val:,} validation), python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores")
    for name, r in (("reference notebook", ref), ("ftprep", ours)):
        runs = " ".join(f"{t:.2f}" for t in r["all"])
        print(f"{name:<20} format+write {r['seconds']:6.2f} s (best of {runs})  "
              f"RSS after load {r['loaded_mb']:5.0f} MB  peak during format+write {r['peak_mb']:5.0f} MB "
              f"(+{r['peak_mb'] - r['loaded_mb']:.0f} MB)")
    print(f"speed-up: {ref['seconds'] / ours['seconds']:.1f}x")
    if not args.skip_cli:
        cli_run(data, n_train, n_val)


def cli_run(data: Path, n_train: int, n_val: int) -> None:
    """The whole `ftprep prepare --no-upload`, its own peak RSS read from /proc (VmHWM) while it runs."""
    cmd = [str(Path(PY).parent / "ftprep"), "prepare", "--data", str(data), "--train-size", str(n_train),
           "--validation-size", str(n_val), "--no-upload", "--out", str(OUT / "cli")]
    t = time.perf_counter()
    with open(OUT / "cli.log", "w+") as log:
        # A fresh Prefect home, so nothing is Cached from an earlier run and every step is measured.
        env = dict(os.environ, PREFECT_HOME=tempfile.mkdtemp(prefix="ftprep-bench-prefect-"))
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        hwm = 0
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                hwm = max(hwm, int(re.search(r"VmHWM:\s+(\d+)", status).group(1)))
            except (OSError, AttributeError):
                pass
            time.sleep(0.05)
        wall = time.perf_counter() - t
        log.seek(0)
        output = log.read()
    if proc.returncode:
        sys.exit(f"ftprep prepare failed:\n{output[-2000:]}")
    m = re.search(r"Formatted and wrote ([\d,]+) examples in ([\d.]+) s", output)
    print(f"ftprep prepare --no-upload, whole run (Prefect start-up, load, hashing, write, stop): {wall:.1f} s wall, "
          f"peak RSS of the ftprep process {hwm / 1e3:.0f} MB; its write task: {m.group(2) if m else '?'} s")


if __name__ == "__main__":
    main()
