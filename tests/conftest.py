from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before Prefect is imported anywhere: a private Prefect home (results, cache keys, local storage) for this
# test session, no telemetry, fast retries, offline token counting, and none of the developer's OpenAI
# settings: no test may use a real key or reach api.openai.com.
ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="ftprep-tests-prefect-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ["FTPREP_RETRY_BASE_SECONDS"] = "0.05"
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken-cache"))
# One migrated Prefect database for the whole test run (tests/prefect_procs.migrated_database), made in a folder
# the pytest-xdist workers inherit from the process that starts them, and removed when the run ends.
if "FTPREP_TEST_DB_DIR" not in os.environ:
    os.environ["FTPREP_TEST_DB_DIR"] = tempfile.mkdtemp(prefix="ftprep-tests-db-")
    _DB_DIR_OWNER = True
for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
    os.environ.pop(name, None)
# No shared result storage from a developer's environment or .env (blank = unset, and .env is not read for it);
# the tests that share results set FTPREP_RESULT_STORAGE for the commands they start.
os.environ["FTPREP_RESULT_STORAGE"] = ""

from tests.openai_stub import StubOpenAI  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_results(tmp_path, monkeypatch) -> Iterator[Path]:
    """Each test its own result store (persisted results, cache records, evaluation answers), in this process
    and in the commands it starts: the session shares one stub URL, so an answer cached by content in one test
    would otherwise be a cache hit in the next."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    store = tmp_path / "prefect-results"
    monkeypatch.setenv("PREFECT_LOCAL_STORAGE_PATH", str(store))
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: store}):
        yield store


@pytest.fixture(scope="session")
def openai_stub_session() -> Iterator[StubOpenAI]:
    """The session's one OpenAI stub server on 127.0.0.1 (random port); tests use ``openai_stub``."""
    with StubOpenAI() as stub:
        yield stub


@pytest.fixture
def openai_stub(openai_stub_session) -> Iterator[StubOpenAI]:
    """The OpenAI Files/Uploads/jobs/chat stub, as good as new: reset before and after each test (connections
    of the previous test aborted, settings back to their defaults, no records, faults, files or jobs);
    ``.base_url`` ends in ``/v1``."""
    openai_stub_session.reset()
    yield openai_stub_session
    openai_stub_session.reset()


@pytest.fixture
def openai_env(openai_stub, monkeypatch) -> StubOpenAI:
    """Settings that point the real SDK at the stub, as a user's environment would."""
    monkeypatch.setenv("OPENAI_API_KEY", openai_stub.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_stub.base_url)
    return openai_stub


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """Prefect for real: a temporary API server (with its own database) for the whole session."""
    import prefect.testing.utilities as harness

    from tests.prefect_procs import seed_database

    def seeded_mkdtemp() -> str:  # the harness's database folder, with the run's migrated template in it
        folder = tempfile.mkdtemp(prefix="ftprep-tests-db-")
        seed_database(Path(folder) / "prefect-test.db")  # the harness's file name (Prefect 3); else it migrates
        return folder

    harness.mkdtemp = seeded_mkdtemp  # the harness makes its folder with this name; only this process's harness
    with harness.prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def sample_pickle(tmp_path_factory) -> Path:
    """The bundled sample: 600 course-shaped ``items.Item`` objects, made as ``make run`` makes them."""
    from scripts.sample import write_pickle

    path = tmp_path_factory.mktemp("sample") / "items.pkl"
    write_pickle(path, 600)
    return path


@pytest.fixture
def cli_env(prefect_server, tmp_path) -> dict[str, str]:
    """Environment for running the ``ftprep`` command as a user would, against the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    return env


# Services a team runs (tests/services.py). Lazy: nothing starts unless a test asks for it; one line says what
# to install when the machine lacks it.
@pytest.fixture(scope="session")
def postgres_service() -> Iterator:
    """A PostgreSQL server (run as the ``postgres`` user under root) for the session; skips without the binaries."""
    from contextlib import ExitStack

    from tests.services import Unavailable, postgres

    with ExitStack() as stack:
        try:
            pg = stack.enter_context(postgres())
        except Unavailable as exc:
            pytest.skip(str(exc))
        yield pg


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory) -> Iterator:
    """moto's S3-compatible server over HTTP for the session: ``.endpoint``, ``.env``, ``.make_bucket(name)``."""
    from contextlib import ExitStack

    from tests.services import Unavailable, s3_server

    with ExitStack() as stack:
        try:
            s3 = stack.enter_context(s3_server(tmp_path_factory.mktemp("s3") / "moto.log"))
        except Unavailable as exc:
            pytest.skip(str(exc))
        yield s3


@pytest.fixture(scope="module")
def team_server(postgres_service, tmp_path_factory) -> Iterator:
    """A real `prefect server start` on its own PostgreSQL database, shared by the tests of one module:
    ``.env`` for Prefect commands and workers, ``.sql(query)`` to read its database."""
    from tests.services import prefect_on_postgres

    base = tmp_path_factory.mktemp("team-server")
    with prefect_on_postgres(postgres_service, base / "prefect-home", base / "server.log") as server:
        yield server


# `make test` runs the suite on several workers (pytest-xdist, `--dist loadfile`: each module on one worker, so a
# module's own server starts once). With `--no-loadscope-reorder` modules go out in collection order (xdist's
# default sends the modules with the most tests first, which left the few long end-to-end tests for the end, one
# worker busy and the others idle), so the longest ones are collected first, in the order of their measured time
# (one full run, `-n 3`), and the short ones fill in around them.
LONGEST_FIRST = ("test_cli.py", "test_team_results.py", "test_deployment_e2e.py", "test_storage.py",
                 "test_finetune_cli.py", "test_flow_finetune_evaluate.py", "test_team.py", "test_server.py",
                 "test_projects.py", "test_finetune_jobs.py", "test_kill_matrix.py", "test_evaluate_failures.py",
                 "test_notify.py", "test_upload_faults.py", "test_ui_browser.py", "test_secrets.py",
                 "test_operator_logs.py", "test_validate.py", "test_flow_prepare.py", "test_token_sample.py")


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_sessionfinish(session, exitstatus) -> None:
    if globals().get("_DB_DIR_OWNER") and not hasattr(session.config, "workerinput"):
        import shutil

        shutil.rmtree(os.environ["FTPREP_TEST_DB_DIR"], ignore_errors=True)
