"""Start and stop real Prefect processes: a temporary `prefect server`, `prefect` commands and a process worker.

Used by the end-to-end test (tests/test_deployment_e2e.py) and by scripts/ui_screenshots.py, so both run the
server and the worker the same way. Standard library only; Prefect itself is only run as a command here.
Every process is started in its own session and stopped with its whole process group when its context ends,
also when the body raises.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_ATTEMPTS = 3  # a port found free may be taken before the server binds it (another worker, a connection)


def port_taken(log: Path) -> bool:
    """The server whose output is ``log`` stopped because its port was taken meanwhile: start it on another."""
    return re.search(r"address already in use|port \d+ is (already )?in use", tail(log).lower()) is not None


@contextmanager
def serve_on_free_port(start: Callable[[int], tuple[list[str], dict[str, str]]], ready: Callable[[int], bool],
                       log: Path, timeout: float, what: str) -> Iterator[int]:
    """Run the server ``start(port)`` gives (its command and environment) on a free port until ``ready(port)``;
    yield the port. Started again on another port when its own was taken before it bound it."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        args, env = start(port)
        with process(args, env, log) as proc:
            wait_until(lambda port=port: ready(port) or proc.poll() is not None, timeout, what)
            if proc.poll() is not None:
                if attempt < PORT_ATTEMPTS and port_taken(log):
                    continue
                raise RuntimeError(f"{what} exited with status {proc.returncode}:\n{tail(log)}")
            yield port
            return


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> Iterator[subprocess.Popen]:
    """Run ``args`` with stdout and stderr to ``log``; on exit SIGTERM its process group (SIGKILL after 20 s)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call ``check`` until it returns something truthy, and return that; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


_template: Path | None = None


def _schema_key() -> str:
    """The installed Prefect's version and SQLite migrations (names and sizes), as a short digest: a migrated
    database made by the same Prefect has the same key."""
    import importlib.metadata
    import importlib.util

    package = Path(importlib.util.find_spec("prefect").origin).parent
    versions = package / "server" / "database" / "_migrations" / "versions" / "sqlite"
    parts = [importlib.metadata.version("prefect")]
    parts += [f"{f.name}:{f.stat().st_size}" for f in sorted(versions.glob("*.py"))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _cached_schema() -> Path:
    """Where a migrated database is kept between test runs (a second run on this machine skips the migration)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ftprep-tests"
    return root / f"prefect-{_schema_key()}.db"


def migrated_database() -> Path:
    """A SQLite Prefect database already migrated to the installed Prefect's schema, made once per test run and
    shared by its processes (pytest-xdist workers; a lock makes one of them migrate), and kept between runs in
    ~/.cache/ftprep-tests under a key of the Prefect version and its migrations. A server started on a copy
    skips the migrations: about 5 s of CPU per server on this machine, 7 s for the migration itself."""
    global _template
    if _template is None:
        # the test run's folder (tests/conftest.py sets it before the workers start), else this process's own
        folder = Path(os.environ.get("FTPREP_TEST_DB_DIR") or tempfile.mkdtemp(prefix="ftprep-prefect-db-"))
        folder.mkdir(parents=True, exist_ok=True)
        template = folder / "prefect.db"
        with open(folder / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cached = _cached_schema()
            if not template.exists() and cached.exists():
                shutil.copyfile(cached, folder / "partial.db")
                (folder / "partial.db").rename(template)
            if not template.exists():
                partial = folder / "partial.db"
                env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PREFECT_"))}
                env.update(PREFECT_HOME=str(folder / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                           PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{partial}")
                subprocess.run([PREFECT, "server", "database", "upgrade", "-y"], env=env, check=True,
                               capture_output=True, timeout=300)
                partial.rename(template)
                cached.parent.mkdir(parents=True, exist_ok=True)
                staged = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
                shutil.copyfile(template, staged)
                staged.rename(cached)  # whole or absent: another run reads it only once renamed
        _template = template
    return _template


def seed_database(path: Path) -> None:
    """Put a copy of the migrated template at ``path`` (a new server's SQLite file), unless one is there."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_database(), path)


@contextmanager
def prefect_server(home: Path, log: Path, timeout: float = 120, database_url: str | None = None,
                   **extra_env: str) -> Iterator[dict[str, str]]:
    """A `prefect server start` on 127.0.0.1 (free port) with its own PREFECT_HOME (and database) in ``home``.

    With ``database_url`` (``postgresql+asyncpg://user:password@host:port/db``, see tests/services.py) the
    server keeps its database there instead of SQLite in ``home``, as a team's server does; only the server
    gets that URL (PREFECT_API_DATABASE_CONNECTION_URL), not the environment it yields.

    Yields the environment for Prefect commands and workers against it: this process's environment without
    any OPENAI_* or PREFECT_* setting, plus PREFECT_HOME, PREFECT_API_URL (``http://127.0.0.1:PORT/api``),
    PWD = the repository (prefect.yaml's pull step uses it), no telemetry, a worker that polls every second, a
    request denied a global concurrency slot that asks again within a second (the server's default allows up to
    30 s), and ``extra_env``. The server is stopped when the context ends.
    """
    if not database_url:
        seed_database(home / "prefect.db")  # Prefect's default database in PREFECT_HOME, already migrated

    def env_for(port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PREFECT_"))}
        env.update(PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api", PWD=str(ROOT),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
                   PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1",
                   PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS="1", **extra_env)
        return env

    def start(port: int) -> tuple[list[str], dict[str, str]]:
        env = env_for(port)
        server_env = dict(env, PREFECT_API_DATABASE_CONNECTION_URL=database_url) if database_url else env
        return [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], server_env

    with serve_on_free_port(start, lambda port: healthy(f"http://127.0.0.1:{port}/api"), log, timeout,
                            "prefect server") as port:
        yield env_for(port)


def prefect(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``prefect ARGS`` from the repository folder; raise with its output if it fails."""
    done = subprocess.run([PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} exited with status {done.returncode}:\n"
                           f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done


@contextmanager
def worker(env: dict[str, str], log: Path, pool: str = "ftprep-process", queue: str | None = None,
           cwd: Path = ROOT, **extra_env: str) -> Iterator[subprocess.Popen]:
    """A `prefect worker start --pool POOL [--work-queue QUEUE]` in ``cwd`` with ``env`` plus ``extra_env``;
    stopped when the context ends."""
    args = [PREFECT, "worker", "start", "--pool", pool, *(["--work-queue", queue] if queue else [])]
    with process(args, dict(env, **extra_env), log, cwd=cwd) as proc:
        yield proc
