"""A/B: the same ``ftprep prepare`` from two checkouts, alternating, against one running Prefect server.

This machine's speed drifts within an hour by more than most changes are worth, so two versions are compared in
one run, each round running both (the order alternating), against the same server and OpenAI stub:

    git worktree add /tmp/base <commit>
    .venv/bin/python bench/ab_bench.py /tmp/base .            # the everyday job: 500/50 with upload
    .venv/bin/python bench/ab_bench.py /tmp/base . --big      # 400,000 items, --no-upload

Each checkout runs from this checkout's virtual environment with its own code first on ``PYTHONPATH`` (a helper
process ftprep starts with ``python -I`` imports the installed checkout's code). Prints the wall time of every
run, then the min and median of each side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the console script's entry (cli.main.run in checkouts from before cli/console.py)
RUN = ("import sys\nsys.argv[0] = 'ftprep'\ntry:\n    from cli.console import run\nexcept ImportError:\n"
       "    from cli.main import run\nrun()\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="a checkout (its folder)")
    ap.add_argument("b", type=Path, help="another checkout")
    ap.add_argument("--big", action="store_true", help="400,000 items, --no-upload (default: 500/50, upload)")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    from bench.scratch import one_folder
    from bench.whole_bench import compile_sources
    from scripts.sample import write_pickle
    from tests.openai_stub import StubOpenAI
    from tests.prefect_procs import prefect_server

    one_folder()

    n = 400_000 if args.big else 600
    data = ROOT / "bench" / "out" / f"items-{n}.pkl"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        write_pickle(data, n)
    sizes = ["--train-size", "399000", "--validation-size", "1000", "--no-upload"] if args.big else \
        ["--train-size", "500", "--validation-size", "50"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPENAI_"))}
    env.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken-cache"))
    sides = {str(args.a): args.a.resolve(), str(args.b): args.b.resolve()}
    for folder in sides.values():
        compile_sources(folder)  # both alike, as `make` leaves an install
    walls: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as home, prefect_server(Path(home), Path(home) / "server.log") as server, \
            StubOpenAI() as stub:
        run_env = dict(env, **server, OPENAI_API_KEY=stub.api_key, OPENAI_BASE_URL=stub.base_url)
        for i in range(args.rounds):
            order = list(sides.items()) if i % 2 == 0 else list(reversed(sides.items()))
            for name, folder in order:
                stub.reset()
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-c", RUN, "prepare", "--data", str(data), *sizes, "--out", tempfile.mkdtemp()],
                    env=dict(run_env, PYTHONPATH=str(folder), PREFECT_LOCAL_STORAGE_PATH=tempfile.mkdtemp()),
                    capture_output=True, text=True, cwd=tempfile.gettempdir())
                walls[name].append(time.perf_counter() - started)
                if done.returncode:
                    sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            print("  ".join(f"{name} {w[-1]:.2f} s" for name, w in walls.items()), flush=True)
    for name, w in walls.items():
        print(f"{name}: min {min(w):.2f} s, median {statistics.median(w):.2f} s ({' '.join(f'{x:.2f}' for x in w)})")


if __name__ == "__main__":
    main()
