"""ftprep's own temporary Prefect server, for runs with no PREFECT_API_URL: safe environment, no orphans, fast.

Prefect's embedded default starts a temporary API server in a child process that inherits the whole environment
(the OpenAI key included), survives its parent when the parent is killed, and is started only when the flow
begins. :class:`TemporaryServer` starts the same server (uvicorn with Prefect's app factory, UI off):

* with only the environment it needs (PATH, HOME, locale, temporary folder and ``PREFECT_*`` settings that are
  not credentials), so no secret reaches it;
* with a parent-death signal (Linux ``PR_SET_PDEATHSIG``), so SIGTERM or SIGKILL of the ftprep process takes it
  down too, and it is stopped explicitly on a normal exit;
* under a file lock in PREFECT_HOME until it answers, so two first runs on a fresh PREFECT_HOME do not race in
  the database migration;
* early: :func:`start` only spawns it and returns, so it boots while ftprep imports its code and checks its
  inputs; :meth:`TemporaryServer.ready` waits for it just before the flow needs it.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

from ftprep import children
from ftprep.errors import FtprepError

_current: TemporaryServer | None = None


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile (read without importing Prefect)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or prefect_home() / "profiles.toml")
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    return (profiles.get("profiles", {}).get(active, {}) or {}).get("PREFECT_API_URL") or None


def child_environment() -> dict[str, str]:
    """The environment the server gets: what it needs to run and Prefect's settings, never a credential."""
    env = children.environment(prefixes=("PREFECT_",))
    env.pop("PREFECT_API_URL", None)
    env.update(PREFECT_HOME=str(prefect_home()), PREFECT_UI_ENABLED="0", PREFECT__SERVER_EPHEMERAL="1",
               PREFECT__SERVER_FINAL="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TemporaryServer:
    """A Prefect API server on 127.0.0.1 that lives exactly as long as this process."""

    def __init__(self) -> None:
        home = prefect_home()
        home.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(home / ".ftprep-server.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # one server at a time through the first migration
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app", "--host",
             "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=child_environment(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=children.preexec(), start_new_session=True,
        )
        atexit.register(self.stop)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def ready(self, timeout: float = 90.0) -> str:
        """Wait until the server answers; return its API URL. FtprepError if it does not start."""
        deadline = time.monotonic() + timeout
        try:
            while not self._healthy():
                if self.process.poll() is not None:
                    err = (self.process.stderr.read() or b"").decode(errors="replace").strip().splitlines()
                    raise FtprepError(f"the temporary Prefect server exited ({err[-1] if err else 'no output'}); "
                                      "start one with `prefect server start` and set PREFECT_API_URL")
                if time.monotonic() > deadline:
                    raise FtprepError(f"the temporary Prefect server did not answer within {timeout:g} s; start "
                                      "one with `prefect server start` and set PREFECT_API_URL")
                time.sleep(0.05)
        finally:
            self._unlock()
        return self.api_url

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def stop(self) -> None:
        self._unlock()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start() -> TemporaryServer | None:
    """Start a temporary server in the background when no Prefect API is configured; point Prefect at it.

    Must run before Prefect is imported: it sets PREFECT_API_URL for this process.
    """
    global _current
    if _current is not None or configured_api_url():
        return _current
    _current = TemporaryServer()
    os.environ["PREFECT_API_URL"] = _current.api_url
    return _current


def ready() -> None:
    """Wait for the temporary server started by :func:`start`, if any."""
    if _current is not None:
        _current.ready()
