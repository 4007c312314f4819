"""A team's load on Prefect's database: N concurrent prepare runs over two process workers, with the server's
database on PostgreSQL and on the default SQLite, each measured the same way.

    .venv/bin/python bench/team_bench.py [--runs 8] [--backends postgresql,sqlite]

For each backend: a real `prefect server start` (PostgreSQL started as in tests/services.py, as the
``postgres`` user when run as root; SQLite in the server's PREFECT_HOME), the work pool, `prefect deploy` of
prefect.yaml, two process workers with their own PREFECT_HOMEs, then N runs of ``prepare-sample`` created at
once on the sample (600 items, the default split 500/50), each writing to its own folder with ``upload``
off. It prints the wall time from creating the runs until all are final, how many completed and failed
(with the failure messages), the median run time, and how often "database is locked" appears in the logs
of the server, the workers and their runs.

On a 2-core machine this mostly measures contention: 8 flow-run processes (each importing Prefect, pandas and
tiktoken) and the server share two cores, so the wall time is dominated by CPU, not by the database; the
failures (and "database is locked") are the part that says something about the database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.scratch import one_folder  # noqa: E402

one_folder()
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="ftprep-bench-prefect-"))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken-cache"))

from tests.prefect_procs import prefect, prefect_server, tail, wait_until, worker  # noqa: E402
from tests.services import Unavailable, postgres, prefect_on_postgres  # noqa: E402

OUT = ROOT / "bench" / "out" / "team"
POOL = "ftprep-process"
LOCKED = "database is locked"


@contextmanager
def server(backend: str, base: Path):
    """The Prefect server's environment, on ``backend`` (postgresql or sqlite)."""
    if backend == "sqlite":
        with prefect_server(base / "server-home", base / "server.log", timeout=180) as env:
            yield env
    else:
        with postgres() as pg, prefect_on_postgres(pg, base / "server-home", base / "server.log") as team:
            yield team.env


def bench(backend: str, runs: int, sample: Path) -> dict:
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    base = OUT / backend
    base.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with server(backend, base) as env, ExitStack() as stack:
        server_up = time.monotonic() - started
        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), \
                get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
            prefect(env, "--no-prompt", "deploy", "--all", timeout=300)
            deployment = client.read_deployment_by_name("prepare/prepare-sample")
            logs = [base / "server.log"]
            for m in ("a", "b"):
                home = base / f"worker-{m}"
                home.mkdir(exist_ok=True)
                logs.append(home / "worker.log")
                stack.enter_context(worker(env, home / "worker.log", cwd=home, PREFECT_HOME=str(home / "home")))
            t0 = time.monotonic()
            ids = [client.create_flow_run_from_deployment(
                       deployment.id, parameters={"data": str(sample), "out": str(base / f"run-{i}"),
                                                  "upload": False}).id
                   for i in range(runs)]

            def final():
                states = [client.read_flow_run(i).state for i in ids]
                return all(s and s.is_final() for s in states)

            try:
                wait_until(final, 900, f"{runs} flow runs", interval=1)
            except TimeoutError:
                print(tail(logs[1]), file=sys.stderr)
                raise
            wall = time.monotonic() - t0
            flow_runs = [client.read_flow_run(i) for i in ids]
    failed = [f"{r.state.name}: {r.state.message}" for r in flow_runs if not r.state.is_completed()]
    durations = [(r.end_time - r.start_time).total_seconds() for r in flow_runs if r.start_time and r.end_time]
    locked = sum(p.read_text(errors="replace").count(LOCKED) for p in logs if p.exists())
    return {"backend": backend, "server_up": server_up, "wall": wall, "completed": runs - len(failed),
            "failed": failed, "median_run": statistics.median(durations) if durations else float("nan"),
            "locked": locked}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--backends", default="postgresql,sqlite")
    args = parser.parse_args()

    from scripts.sample import write_pickle

    OUT.mkdir(parents=True, exist_ok=True)
    sample = OUT / "items.pkl"
    write_pickle(sample, 600)
    print(f"{args.runs} concurrent prepare runs (600 items, 500/50, no upload) over 2 process workers; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    status = 0
    for backend in args.backends.split(","):
        try:
            r = bench(backend, args.runs, sample)
        except Unavailable as exc:
            print(f"{backend:<10} skipped: {exc}")
            continue
        print(f"{r['backend']:<10} wall {r['wall']:6.1f} s  completed {r['completed']}/{args.runs}  "
              f"failed {len(r['failed'])}  median run {r['median_run']:5.1f} s  "
              f"'{LOCKED}' in logs: {r['locked']}  (server up in {r['server_up']:.1f} s)")
        for message in r["failed"]:
            print(f"           failed: {message[:300]}")
        status |= bool(r["failed"])
    return status


if __name__ == "__main__":
    sys.exit(main())
