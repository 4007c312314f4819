"""The real services a team runs beside Prefect, started for tests and benchmarks: PostgreSQL and an S3 store.

``postgres()`` runs the PostgreSQL server binaries installed on the machine (``/usr/lib/postgresql/*/bin`` or
``initdb`` on PATH) on 127.0.0.1 and a free port. PostgreSQL refuses to run as root, so when this process is
root (as in CI) every server command runs as the ``postgres`` user (``runuser -u postgres --``) and the data
folder is owned by that user. ``s3_server()`` runs moto's S3-compatible server (``python -m moto.server``) as
a process on a free port, reached over real HTTP by anything that honours ``AWS_ENDPOINT_URL`` (boto3,
s3fs). README "Run as a team" → "Local rehearsal" runs the same commands by hand.

Standard library only, apart from boto3 for creating buckets. A missing service raises :class:`Unavailable`
with one line saying what to install; the pytest fixtures in tests/conftest.py turn that into a skip.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.prefect_procs import free_port, prefect_server, serve_on_free_port, tail


class Unavailable(RuntimeError):
    """A service cannot be started on this machine; the message is one line saying what to install."""


# --- PostgreSQL ------------------------------------------------------------------------------------------------

PG_USER = "postgres"


def postgres_bin() -> Path:
    """The folder with initdb, pg_ctl and psql: ``initdb`` on PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", Path(path).parent.name))

    found = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if (Path(p) / "initdb").exists()]
    if not found:
        raise Unavailable("PostgreSQL server binaries not found (initdb): apt-get install postgresql")
    return Path(max(found, key=version))


def _as_postgres() -> list[str]:
    """The prefix that runs a command as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam(PG_USER)
    except KeyError:
        raise Unavailable("no 'postgres' user to run PostgreSQL as root: apt-get install postgresql") from None
    return ["runuser", "-u", PG_USER, "--"]


def _run(args: list[str], what: str, timeout: float = 120) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{what} exited with status {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


@dataclass
class Postgres:
    """A running PostgreSQL server; ``url`` is the asyncpg URL of its database ``db`` for user ``user``."""

    bin: Path
    root: Path  # data folder, socket and log, owned by the server's user
    port: int
    user: str
    password: str
    db: str
    prefix: list[str] = field(repr=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url_for(self, db: str) -> str:
        return f"postgresql+asyncpg://{self.user}:{self.password}@127.0.0.1:{self.port}/{db}"

    @property
    def url(self) -> str:
        return self.url_for(self.db)

    def psql(self, sql: str, db: str | None = None) -> str:
        """Run ``sql`` as the superuser over the server's Unix socket; return psql's unaligned output."""
        return _run([*self.prefix, str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
                     "-h", str(self.root), "-p", str(self.port), "-U", PG_USER, "-d", db or "postgres", "-c", sql],
                    f"psql -c {sql!r}")

    def new_database(self, name: str) -> str:
        """Create database ``name`` owned by the server's user; return its asyncpg URL."""
        self.psql(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        return self.url_for(name)


@contextmanager
def postgres(parent: Path | None = None, user: str = "ftprep", password: str = "ftprep-test",
             db: str = "prefect") -> Iterator[Postgres]:
    """A PostgreSQL server on 127.0.0.1 (free port) with database ``db`` owned by ``user`` (password auth).

    Its data folder, socket and log live in a new folder under ``parent`` (default: the system's temp folder;
    pytest's tmp_path is not readable by the ``postgres`` user), owned by the server's user. Local socket
    connections are trusted (for :meth:`Postgres.psql`), TCP ones need the password. The server is stopped
    and its folder removed when the context ends. Raises :class:`Unavailable` without the binaries.
    """
    bindir, prefix = postgres_bin(), _as_postgres()
    root = Path(tempfile.mkdtemp(prefix="ftprep-pg-", dir=parent))
    if prefix:
        shutil.chown(root, PG_USER, PG_USER)
    server = Postgres(bindir, root, free_port(), user, password, db, prefix)
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(server.data)]
    try:
        # -N: no fsync of the new cluster (a throwaway one); C locale: the same on every machine
        _run([*prefix, str(bindir / "initdb"), "-D", str(server.data), "-U", PG_USER, "-E", "UTF8", "--locale=C",
              "--auth-local=trust", "--auth-host=scram-sha-256", "-N"], "initdb")
        try:
            _run([*pg_ctl, "-o", f"-h 127.0.0.1 -p {server.port} -k {root}", "-l", str(server.log),
                  "-w", "-t", "60", "start"], "pg_ctl start")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{tail(server.log)}") from None
        try:
            server.psql(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'")
            server.new_database(db)
            yield server
        finally:
            subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class PrefectOnPostgres:
    """A running `prefect server start` whose database is ``database`` on ``postgres``; ``env`` as
    tests/prefect_procs.py's prefect_server yields it (for Prefect commands and workers)."""

    env: dict[str, str]
    postgres: Postgres
    database: str

    def sql(self, query: str) -> str:
        """Run ``query`` in the server's database, as PostgreSQL's superuser (psql, unaligned output)."""
        return self.postgres.psql(query, db=self.database)


@contextmanager
def prefect_on_postgres(pg: Postgres, home: Path, log: Path, timeout: float = 180) -> Iterator[PrefectOnPostgres]:
    """A `prefect server start` (PREFECT_HOME ``home``) on a new database of ``pg``, migrated on start."""
    database = f"prefect_{uuid.uuid4().hex[:12]}"
    url = pg.new_database(database)
    with prefect_server(home, log, timeout=timeout, database_url=url) as env:
        yield PrefectOnPostgres(env, pg, database)


# --- S3 (moto server) ------------------------------------------------------------------------------------------

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                  "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3:
    """A running S3-compatible server: ``endpoint`` and ``env`` (AWS_ENDPOINT_URL and fake credentials)."""

    endpoint: str
    env: dict[str, str]

    def client(self):
        """A boto3 S3 client for this server, configured explicitly (this process's environment is untouched)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (no error if it exists); return ``s3://name``."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        return f"s3://{name}"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def s3_server(log: Path, timeout: float = 60) -> Iterator[S3]:
    """moto's S3-compatible server (``python -m moto.server``) on 127.0.0.1 and a free port, logging to ``log``.

    Raises :class:`Unavailable` when moto's server extra is not installed. Stopped when the context ends.
    """
    try:
        import flask  # noqa: F401 - moto's server mode needs it (moto[server])
        import moto.server  # noqa: F401
    except ImportError:
        raise Unavailable("moto's server mode not installed: pip install 'moto[server]' (the dev extra)") from None
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}

    def start(port: int) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env

    with serve_on_free_port(start, lambda port: _answers(f"http://127.0.0.1:{port}"), log, timeout,
                            "the moto S3 server") as port:
        endpoint = f"http://127.0.0.1:{port}"
        yield S3(endpoint, {"AWS_ENDPOINT_URL": endpoint, **S3_CREDENTIALS})
