"""Whole-command benchmark: the notebook's path vs ``ftprep prepare``, and a naive Prefect port on the everyday job.

    .venv/bin/python bench/whole_bench.py                 # 400k, 500/50 with upload, warm make-run command
    .venv/bin/python bench/whole_bench.py --curve          # also JSONL inputs of 100k, 400k (and --big: 2M)
    .venv/bin/python bench/whole_bench.py --curve-only [--big]   # only the JSONL streaming curve
    .venv/bin/python bench/whole_bench.py --everyday-only --rounds 7   # only the 500/50 job and its floor

Printed, each side in its own process (wall from process start to exit, peak RSS: the process's VmHWM or the
highest sum of its and its descendants' VmRSS, whichever is larger; at 400k also the CPU seconds the whole machine
spent meanwhile, from /proc/stat, and the least wall that CPU allows on this machine's cores):

1. 400,000 course items, 399,000 train + 1,000 validation, ``--no-upload``: the course notebook's whole path
   (unpickle, format, ``json.dumps``, one write) against ``ftprep prepare`` with the validation gate on, best of
   3 each, interleaved, against one running Prefect server, a fresh result store per ftprep run (nothing cached).
2. The everyday job, 500/50 with upload to the local stub: ftprep against ``bench/naive_port.py`` (five plain
   Prefect tasks), same server, the stub emptied before each run, best of 3 interleaved; and the floor
   (``bench/prefect_floor.py``: one flow, the two ``files.create``, no heartbeat, no teardown) with 1 task run
   and with ftprep's 10.
3. The command ``make run`` runs (600-item sample, Prefect's embedded default: no PREFECT_API_URL), warm
   (installed, Prefect's database migrated), best of 2, against the naive port on the same default.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PY = sys.executable
FTPREP = str(Path(PY).parent / "ftprep")
sys.path.insert(0, str(ROOT))

NOTEBOOK = """
import pickle, sys
sys.path.insert(0, {root!r} + "/bench")
import course_items
from course_items import nb
course_items.install()
with open({data!r}, "rb") as f:
    items = pickle.load(f)
nb.write_jsonl(items[:{n_train}], {out!r} + "/fine_tune_train.jsonl")
nb.write_jsonl(items[{n_train}:{n_train} + {n_val}], {out!r} + "/fine_tune_validation.jsonl")
"""


def _status_kb(pid: int, field: str) -> int:
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split(field + ":")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (ftprep's validation and chart processes, the validation workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, ValueError):
            pass
    return found


class Run(NamedTuple):
    wall: float  # seconds, from the process's start to its exit
    rss: float  # peak RSS, MB
    cpu: float  # CPU seconds the machine spent meanwhile (every process but this sampler: the command's, the server's)


def _busy() -> float:
    """CPU seconds this machine has spent busy since boot, all cores together: user, nice, system, interrupts (not
    idle, I/O wait, or the time a hypervisor gave to other machines)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (sum(map(int, fields[:3])) + sum(map(int, fields[5:7]))) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> Run:
    """(wall seconds, peak RSS MB, CPU seconds) of one command. Peak RSS: the larger of its process's own
    high-water mark and the highest sum of the resident sizes of it and its descendants seen every 10 ms (pages a
    forked worker shares with its parent are counted in each). CPU: the machine's, so it includes the Prefect
    server's work for the command and anything else running, less this process's own (the sampling above costs
    about 0.05 s a second). Exits with the command's output if it fails."""
    started, busy, mine = time.perf_counter(), _busy(), time.process_time()
    hwm = tree = 0
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:  # (rusage would count the forked parent, and miss what is not waited for)
            hwm = max(hwm, _status_kb(proc.pid, "VmHWM"))
            tree = max(tree, sum(_status_kb(p, "VmRSS") for p in _tree(proc.pid)))
            time.sleep(0.01)
        hwm = max(hwm, tree)
        wall, cpu = time.perf_counter() - started, _busy() - busy - (time.process_time() - mine)
        if proc.returncode:
            log.seek(0)
            sys.exit(f"{' '.join(cmd[:3])} failed:\n{log.read().decode(errors='replace')[-3000:]}")
    return Run(wall, hwm / 1024, cpu)


def best(runs: list[Run]) -> str:
    walls = " ".join(f"{r.wall:.1f}" for r in runs)
    return f"{min(r.wall for r in runs):6.2f} s (runs {walls}), peak RSS {max(r.rss for r in runs):5.0f} MB"


def compile_sources(root: Path = ROOT) -> None:
    """ftprep's own modules compiled to bytecode, as ``make`` leaves an install (see the Makefile's COMPILED): this
    machine sets PYTHONDONTWRITEBYTECODE=1, under which every process would compile them from source again."""
    import compileall

    for package in ("cli", "flows", "tasks", "ftprep"):
        compileall.compile_dir(root / package, quiet=1)


def fresh_store(env: dict[str, str]) -> dict[str, str]:
    return dict(env, PREFECT_LOCAL_STORAGE_PATH=tempfile.mkdtemp(prefix="ftprep-bench-store-"))


def big_run(server_env: dict[str, str], n: int, rounds: int) -> None:
    from scripts.sample import write_pickle

    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / f"items-{n}.pkl"
    if not data.exists():
        write_pickle(data, n)
    n_val = 1_000
    nb_out, ft_out = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    notebook, ours = [], []
    code = NOTEBOOK.format(root=str(ROOT), data=str(data), n_train=n - n_val, n_val=n_val, out=str(nb_out))
    for _ in range(rounds):  # interleaved, so both sides see the same machine
        notebook.append(measure([PY, "-c", code], dict(os.environ)))
        ours.append(measure([FTPREP, "prepare", "--data", str(data), "--train-size", str(n - n_val),
                             "--validation-size", str(n_val), "--no-upload", "--out", str(ft_out)],
                            fresh_store(server_env)))
    print(f"{n:,} items ({n - n_val:,} + {n_val:,}), --no-upload, validation gate on, python "
          f"{sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"  notebook whole path      {best(notebook)}")
    print(f"  ftprep prepare           {best(ours)}")
    ratio = min(r.wall for r in ours) / min(r.wall for r in notebook)
    rss = max(r.rss for r in ours) / max(r.rss for r in notebook)
    print(f"  ratio ftprep/notebook    wall {ratio:.2f}x, peak RSS {rss:.2f}x")
    cores, fastest = len(os.sched_getaffinity(0)), min(ours, key=lambda r: r.wall)
    print(f"  CPU, whole machine       notebook {' '.join(f'{r.cpu:.1f}' for r in notebook)} s, ftprep "
          f"{' '.join(f'{r.cpu:.1f}' for r in ours)} s (its processes and the server's work for it; anything else "
          "running counts too)")
    print(f"  ftprep's fastest run     {fastest.wall:.2f} s with {fastest.cpu:.1f} s of CPU: {cores} cores "
          f"{fastest.cpu / fastest.wall / cores:.0%} busy; with them all busy from start to end, that CPU could not "
          f"take less than {fastest.cpu / cores:.2f} s, {fastest.cpu / cores / min(r.wall for r in notebook):.2f}x "
          "the notebook")


def everyday(server_env: dict[str, str], rounds: int) -> None:
    from scripts.sample import write_pickle
    from tests.openai_stub import StubOpenAI

    data = OUT / "items-600.pkl"
    if not data.exists():
        write_pickle(data, 600)
    ours, naive, floor, floor10 = [], [], [], []
    with StubOpenAI() as stub:
        env = dict(server_env, OPENAI_API_KEY=stub.api_key, OPENAI_BASE_URL=stub.base_url)
        for _ in range(rounds):
            stub.reset()
            ours.append(measure([FTPREP, "prepare", "--data", str(data), "--train-size", "500",
                                 "--validation-size", "50", "--out", tempfile.mkdtemp()], fresh_store(env)))
            stub.reset()
            naive_out = tempfile.mkdtemp()
            naive.append(measure([PY, str(ROOT / "bench" / "naive_port.py"), "--data", str(data), "--upload",
                                  "--out", naive_out], fresh_store(env)))
            files = [f"{naive_out}/fine_tune_train.jsonl", f"{naive_out}/fine_tune_validation.jsonl"]
            for tasks, runs in ((1, floor), (10, floor10)):  # the floor uploads the naive port's two files
                stub.reset()
                runs.append(measure([PY, str(ROOT / "bench" / "prefect_floor.py"), *files, "--tasks", str(tasks)],
                                    fresh_store(env)))
    low = min(r.wall for r in naive)
    print("500/50 with upload to the local stub, same running Prefect server")
    print(f"  naive Prefect port       {best(naive)}")
    print(f"  ftprep prepare           {best(ours)}")
    print(f"  ratio ftprep/naive       {min(r.wall for r in ours) / low:.2f}x")
    print(f"  floor, 1 task            {best(floor)}")
    print(f"  floor, 10 tasks          {best(floor10)}")
    print(f"  ratio floor/naive        {min(r.wall for r in floor) / low:.2f}x with 1 task, "
          f"{min(r.wall for r in floor10) / low:.2f}x with ftprep's 10 (bench/prefect_floor.py: the two files.create, "
          "no heartbeat, no teardown)")


def make_run(rounds: int) -> None:
    from scripts.sample import write_pickle

    data = ROOT / "data" / "sample" / "items.pkl"
    if not data.exists():  # what `make sample` leaves, on a fresh checkout too
        data.parent.mkdir(parents=True, exist_ok=True)
        write_pickle(data, 600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "OPENAI_"))}
    env["PREFECT_HOME"] = home = tempfile.mkdtemp(prefix="ftprep-bench-home-")
    measure([FTPREP, "prepare", "--data", str(data), "--out", tempfile.mkdtemp(), "--no-upload"], env)  # migrate
    ours, naive = [], []
    for _ in range(rounds):
        ours.append(measure([FTPREP, "prepare", "--data", str(data), "--out", tempfile.mkdtemp()],
                            fresh_store(dict(env, PREFECT_HOME=home))))
        naive.append(measure([PY, str(ROOT / "bench" / "naive_port.py"), "--data", str(data), "--out",
                              tempfile.mkdtemp()], fresh_store(dict(env, PREFECT_HOME=home))))
    print("make run's command (600-item sample, no key), Prefect's embedded default, warm")
    print(f"  naive Prefect port       {best(naive)}")
    print(f"  ftprep prepare           {best(ours)}")
    print(f"  ratio ftprep/naive       {min(r.wall for r in ours) / min(r.wall for r in naive):.2f}x")


def curve(server_env: dict[str, str], sizes: list[int]) -> None:
    from scripts.sample import generate_items

    OUT.mkdir(parents=True, exist_ok=True)
    print("JSONL inputs, --no-upload, all records but 1,000 for training, validation gate on; what grows with N: the "
          "line index (8 B a record) and validation's duplicate/leakage digests")
    for n in sizes:
        data = OUT / f"items-{n}.jsonl"
        if not data.exists():
            with open(data, "w") as f:
                for item in generate_items(n):
                    f.write(json.dumps(item if isinstance(item, dict) else vars(item)) + "\n")
        wall, rss, _ = measure([FTPREP, "prepare", "--data", str(data), "--train-size", str(n - 1000),
                                "--validation-size", "1000", "--no-upload", "--out", tempfile.mkdtemp()],
                               fresh_store(server_env))
        print(f"  {n:>9,} items  {wall:6.1f} s  ({wall / n * 1e6:5.1f} us/item)  peak RSS {rss:6.0f} MB  "
              f"({data.stat().st_size / 1e6:.0f} MB file, line index {8 * n / 1e6:.1f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400_000, help="items of the big run (default 400,000)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each side, interleaved; the best counts")
    ap.add_argument("--curve", action="store_true", help="also the JSONL streaming curve (100k, 400k)")
    ap.add_argument("--curve-only", action="store_true", help="only the JSONL streaming curve")
    ap.add_argument("--big", action="store_true", help="with --curve or --curve-only: also 2M items")
    ap.add_argument("--everyday-only", action="store_true", help="only the 500/50 job (ftprep, naive port, floor)")
    args = ap.parse_args()
    from bench.scratch import one_folder
    from tests.prefect_procs import prefect_server

    one_folder()
    compile_sources()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPENAI_"))}
    os.environ.update(TIKTOKEN_CACHE_DIR=os.environ.get("TIKTOKEN_CACHE_DIR",
                                                        str(ROOT.parent / "shared" / "tiktoken-cache")))
    with tempfile.TemporaryDirectory() as home, prefect_server(Path(home), Path(home) / "server.log") as server:
        server_env = dict(env, **server)
        server_env["TIKTOKEN_CACHE_DIR"] = os.environ["TIKTOKEN_CACHE_DIR"]
        if args.everyday_only:
            everyday(server_env, args.rounds)
            return
        if not args.curve_only:
            big_run(server_env, args.n, args.rounds)
            everyday(server_env, args.rounds)
        if args.curve or args.curve_only:
            curve(server_env, [100_000, 400_000] + ([2_000_000] if args.big else []))
    if not args.curve_only:
        make_run(2)


if __name__ == "__main__":
    main()
