"""The upload fault matrix: the real SDK, over real HTTP, through every fault the stub can script.

Each case runs the Prefect ``upload`` task (retries on, no delays, no cache) under a real Prefect server and
checks the outcome, how many times the file's body was sent, and that exactly one remote file holds the
content. Transient faults end in success; permanent errors fail after one attempt with one clear line.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from ftprep.client import make_client
from ftprep.errors import RemoteError, TransientRemoteError
from ftprep.remote import RemotePolicy as UploadPolicy
from ftprep.settings import Settings
from tasks.upload import (
    FileWindow,
    remote_name,
    upload_and_wait,
    upload_file,
    upload_once,
)
from tests.openai_stub import DEFAULT_API_KEY

pytestmark = pytest.mark.usefixtures("prefect_server")

ROOT = Path(__file__).resolve().parent.parent
FAST = UploadPolicy(backoff_seconds=0.01, processing_timeout=10)
FILES = "/v1/files"
LINE = b'{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}\n'


def client_for(stub, timeout: float = 10.0):
    return make_client(Settings(api_key=SecretStr(stub.api_key), base_url=stub.base_url, timeout_seconds=timeout))


@pytest.fixture
def client(openai_stub):
    return client_for(openai_stub)


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "fine_tune_train.jsonl"
    path.write_bytes(LINE * 12)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def task_log():
    """Messages logged by task runs (Prefect's run loggers do not propagate to pytest's caplog)."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect(level=logging.DEBUG)
    logger = logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def run_task(client, path, sha, policy=FAST, retries=4):
    uploader = upload_file.with_options(retries=retries, retry_delay_seconds=0, cache_policy=NO_CACHE)
    return uploader(client, str(path), sha, 12, "train", policy=policy)


def one_remote_copy(stub, path, sha):
    """Exactly one live remote file, holding exactly the local bytes under the content-hash name."""
    files = stub.files_for()
    assert len(files) == 1, [(f.id, f.filename, f.bytes) for f in files]
    assert files[0].read_bytes() == path.read_bytes() and files[0].filename == remote_name(path, sha)
    return files[0]


# ------------------------------------------------------------------------------------------------ transient


TRANSIENT = [
    # (fault kind, fault kwargs, bodies sent, why)
    ("status", {"status": 408}, 2, "not stored: sent again"),
    ("status", {"status": 409}, 2, "not stored: sent again"),
    ("status", {"status": 500}, 2, "not stored: looked again, found nothing, sent again"),
    ("status", {"status": 502}, 2, "not stored: looked again, found nothing, sent again"),
    ("status", {"status": 503}, 2, "not stored: looked again, found nothing, sent again"),
    ("status", {"status": 502, "store": True}, 1, "stored before the 502: found by looking again"),
    ("reset", {}, 2, "connection reset before the body was read: sent again"),
    ("store_then_drop", {}, 1, "stored, connection dropped: found by looking again"),
    ("malformed_json", {}, 2, "truncated JSON, not stored: sent again"),
    ("malformed_json", {"store": True}, 1, "truncated JSON after storing: found by looking again"),
]


@pytest.mark.parametrize("kind, kw, sent, why", TRANSIENT, ids=[f"{k}-{kw}" for k, kw, *_ in TRANSIENT])
def test_transient_fault_ends_in_one_remote_file(openai_env, client, jsonl, task_log, kind, kw, sent, why):
    path, sha = jsonl
    openai_env.inject("POST", FILES, kind, **kw)
    remote = run_task(client, path, sha)
    stored = one_remote_copy(openai_env, path, sha)
    assert remote.id == stored.id and remote.status == "processed", why
    assert openai_env.count("POST", FILES, exact=True) == sent, why
    assert remote.reused is (sent == 1), why  # found after an unknown outcome counts as reused
    if sent == 2:  # the failed attempt was logged with its reason, then retried
        assert any("attempt 1 of 5 failed" in m and "retrying" in m for m in task_log), task_log
    else:
        assert any(m.startswith("Outcome of sending") for m in task_log), task_log


def test_429_waits_for_retry_after(openai_env, client, jsonl, task_log):
    path, sha = jsonl
    openai_env.inject("POST", FILES, "status", status=429, retry_after="0.4")
    run_task(client, path, sha)
    one_remote_copy(openai_env, path, sha)
    posts = [r for r in openai_env.requests if r.method == "POST" and r.path == FILES]
    assert len(posts) == 2 and posts[1].started_at - posts[0].started_at >= 0.4
    assert any("HTTP 429 (RateLimitError)" in m and "Retry-After 0.4 s; retrying" in m for m in task_log), task_log


def test_503_waits_for_retry_after_ms(openai_env, client, jsonl):
    path, sha = jsonl
    openai_env.inject("POST", FILES, "status", status=503, retry_after_ms="300")
    run_task(client, path, sha)
    one_remote_copy(openai_env, path, sha)
    posts = [r for r in openai_env.requests if r.method == "POST" and r.path == FILES]
    assert len(posts) == 2 and posts[1].started_at - posts[0].started_at >= 0.3


def test_timeout_after_the_server_stored_the_file(openai_env, jsonl, task_log):
    path, sha = jsonl
    short = client_for(openai_env, timeout=0.3)
    openai_env.inject("POST", FILES, "delay", seconds=1.5, when="after")  # stored, answered too late
    remote = run_task(short, path, sha)
    assert one_remote_copy(openai_env, path, sha).id == remote.id and remote.reused
    assert openai_env.count("POST", FILES, exact=True) == 1
    assert any("timeout (APITimeoutError)" in m for m in task_log), task_log


def test_copy_stored_late_by_a_timed_out_request_is_removed(openai_env, jsonl):
    path, sha = jsonl
    short = client_for(openai_env, timeout=0.3)
    # The server holds the first request for 2 s and only then stores it, long after the client gave up (0.3 s)
    # and sent it again (about 0.7 s); the late copy shows up while the second one is being processed (its polls
    # back off 0.3, 0.6, 1.2, 2.4 s), and is deleted.
    openai_env.inject("POST", FILES, "delay", seconds=2.0)
    openai_env.processing_polls = 4
    remote = run_task(short, path, sha, policy=UploadPolicy(backoff_seconds=0.3, processing_timeout=10))
    assert openai_env.count("POST", FILES, exact=True) == 2
    assert one_remote_copy(openai_env, path, sha).id == remote.id and not remote.reused
    assert openai_env.count("DELETE", FILES) == 1


def test_several_faults_in_a_row_stay_within_the_attempt_budget(openai_env, client, jsonl):
    path, sha = jsonl
    openai_env.inject("POST", FILES, "status", status=503)
    openai_env.inject("POST", FILES, "reset")
    openai_env.inject("POST", FILES, "status", status=429, retry_after_ms="10")
    openai_env.inject("POST", FILES, "malformed_json")
    run_task(client, path, sha)  # the fifth and last attempt succeeds
    one_remote_copy(openai_env, path, sha)
    assert openai_env.count("POST", FILES, exact=True) == 5


def test_persistent_transient_failure_gives_up_after_the_budget(openai_env, client, jsonl):
    path, sha = jsonl
    openai_env.inject("POST", FILES, "status", times=None, status=503)
    with pytest.raises(TransientRemoteError) as info:
        run_task(client, path, sha, retries=2)
    message = str(info.value)
    assert "failed (attempt 3 of 3): HTTP 503" in message and "FTPREP_UPLOAD_RETRIES" in message
    assert "\n" not in message and openai_env.api_key not in message
    assert openai_env.count("POST", FILES, exact=True) == 3 and openai_env.files_for() == []


# ------------------------------------------------------------------------------------------------ permanent


@pytest.mark.parametrize("status, remedy", [(400, "ftprep validate"), (401, "OPENAI_API_KEY"),
                                            (403, "project"), (404, "OPENAI_BASE_URL"),
                                            (422, "ftprep validate")])
def test_permanent_error_fails_after_one_attempt(openai_env, client, jsonl, task_log, status, remedy):
    path, sha = jsonl
    openai_env.inject("POST", FILES, "status", times=None, status=status,
                      message=f"Rejected; key {openai_env.api_key[:6]}****")
    with pytest.raises(RemoteError) as info:
        run_task(client, path, sha)
    message = str(info.value)
    assert not isinstance(info.value, TransientRemoteError)
    assert message.startswith(f"upload of {path} was refused: HTTP {status} (") and remedy in message
    assert "\n" not in message and openai_env.api_key not in message
    assert openai_env.count("POST", FILES, exact=True) == 1 and openai_env.files_for() == []
    assert any("attempt 1 of 5 failed" in m and "not retrying (permanent error)" in m for m in task_log)


def test_wrong_key_is_refused_once_without_leaking_it(openai_env, jsonl):
    path, sha = jsonl
    bad = make_client(Settings(api_key=SecretStr("sk-wrong-key-0123456789"), base_url=openai_env.base_url))
    with pytest.raises(RemoteError, match="refused: HTTP 401.*check OPENAI_API_KEY") as info:
        run_task(bad, path, sha)
    assert "sk-wrong-key-0123456789" not in str(info.value)
    assert openai_env.count() == 1  # the first list was refused; nothing else was tried


# ------------------------------------------------------------------------------------------------ processing


def test_waits_until_processed(openai_env, client, jsonl):
    path, sha = jsonl
    openai_env.processing_polls = 3
    remote = run_task(client, path, sha)
    assert remote.status == "processed"
    assert openai_env.count("GET", f"{FILES}/{remote.id}", exact=True) == 3


def test_processing_error_fails_with_the_servers_message(openai_env, client, jsonl):
    path, sha = jsonl
    openai_env.processing_polls = 2
    openai_env.fail_processing_for(remote_name(path, sha), "Invalid file format: line 3 is not a JSON object")
    with pytest.raises(RemoteError, match=r"OpenAI could not process .*: Invalid file format: line 3 is not a "
                                          r"JSON object; fix the file and run again"):
        run_task(client, path, sha)
    assert openai_env.count("POST", FILES, exact=True) == 1  # not retried


def test_processing_timeout_says_how_to_wait_longer(openai_env, client, jsonl):
    path, sha = jsonl
    openai_env.processing_polls = 10_000
    policy = UploadPolicy(backoff_seconds=0.05, processing_timeout=0.4)
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match=r"still 'uploaded' after 0.4 s; .*FTPREP_PROCESSING_TIMEOUT"):
        run_task(client, path, sha, policy=policy)
    assert time.monotonic() - t0 < 5
    assert openai_env.count("POST", FILES, exact=True) == 1
    # A later run reuses the uploaded file instead of sending it again.
    openai_env.processing_polls = 0
    (only,) = openai_env.files_for()
    only.polls_needed = 0
    assert run_task(client, path, sha).id == only.id
    assert openai_env.count("POST", FILES, exact=True) == 1


# ------------------------------------------------------------------------------------------------ large files


@pytest.fixture
def big(tmp_path):
    path = tmp_path / "fine_tune_big.jsonl"
    path.write_bytes(LINE * 44_000)  # ~3.6 MB: four parts of 1 MiB
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


PARTS = UploadPolicy(part_threshold=1024 * 1024, part_size=1024 * 1024, backoff_seconds=0.01)


def test_large_file_goes_through_the_uploads_api_in_parts(openai_env, client, big, task_log):
    path, sha = big
    remote = run_task(client, path, sha, policy=PARTS)
    stored = one_remote_copy(openai_env, path, sha)
    assert remote.id == stored.id and remote.bytes == path.stat().st_size
    assert openai_env.count("POST", FILES, exact=True) == 0
    assert openai_env.count("POST", "/v1/uploads", exact=True) == 1
    parts = [r for r in openai_env.requests if r.path.endswith("/parts")]
    assert len(parts) == 4 and max(r.body_size for r in parts) < 1024 * 1024 + 4096
    complete = [r for r in openai_env.requests if r.path.endswith("/complete")]
    assert complete[0].json["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert any("in 4 parts" in m for m in task_log)
    # Again: found by name and size, nothing sent.
    assert run_task(client, path, sha, policy=PARTS).reused
    assert openai_env.count("POST", "/v1/uploads", exact=True) == 1


def test_failed_parts_are_sent_again_within_the_attempt(openai_env, client, big):
    path, sha = big
    # The first part fails twice: a 503 (after Retry-After), then stored but never answered (a part the
    # server holds but nobody names: discarded on completion). Its third try succeeds.
    openai_env.inject("POST", "/v1/uploads/*/parts", "status", status=503, retry_after_ms="100")
    openai_env.inject("POST", "/v1/uploads/*/parts", "store_then_drop")
    run_task(client, path, sha, policy=PARTS)
    one_remote_copy(openai_env, path, sha)  # the bytes are right: the orphan part was not used
    assert openai_env.count("POST", "/v1/uploads", exact=True) == 1  # one task attempt was enough
    parts = [r for r in openai_env.requests if r.path.endswith("/parts")]
    assert len(parts) == 4 + 2 and parts[1].started_at - parts[0].started_at >= 0.1


def test_lost_completion_is_found_not_repeated(openai_env, client, big):
    path, sha = big
    openai_env.inject("POST", "/v1/uploads/*/complete", "store_then_drop")
    remote = run_task(client, path, sha, policy=PARTS)
    assert one_remote_copy(openai_env, path, sha).id == remote.id and remote.reused
    assert openai_env.count("POST", "/v1/uploads", exact=True) == 1


def test_part_refused_cancels_the_upload_and_fails_once(openai_env, client, big):
    path, sha = big
    openai_env.inject("POST", "/v1/uploads/*/parts", "status", status=400, message="Part is too large.")
    with pytest.raises(RemoteError, match="refused: HTTP 400 .*Part is too large"):
        run_task(client, path, sha, policy=PARTS)
    assert openai_env.count("POST", "/v1/uploads/", fault=None) >= 1
    assert len([r for r in openai_env.requests if r.path.endswith("/cancel")]) == 1
    assert openai_env.files_for() == []


@pytest.fixture
def stub_process():
    """The stub in its own process, so that only the uploader's memory is measured here."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.openai_stub", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


def test_parts_are_streamed_not_held_in_memory(stub_process, tmp_path):
    path = tmp_path / "fine_tune_big.jsonl"
    with open(path, "wb") as fh:
        for _ in range(20):
            fh.write(LINE * 10_000)  # ~16 MB in sixteen 1 MiB parts
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    client = make_client(Settings(api_key=SecretStr(DEFAULT_API_KEY), base_url=stub_process))
    client.files.list()  # connection and lazy imports before measuring
    tracemalloc.start()
    try:
        file, _, _ = upload_once(client, path, sha, policy=PARTS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"peak Python allocation {peak:,} bytes while sending 16 MB"
    assert client.files.content(file.id).read() == path.read_bytes()
    assert [f.id for f in client.files.list()] == [file.id]


def test_file_window_is_a_rewindable_slice(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 4)
    with FileWindow(path, 100, 300) as w:
        assert w.read(10) == bytes(range(100, 110)) and w.tell() == 10
        assert w.seek(0, 2) == 300 and w.read() == b""
        w.seek(0)
        assert w.read() == (bytes(range(256)) * 4)[100:400]
        with pytest.raises(OSError):
            w.fileno()  # httpx must not take the whole file's size from the descriptor


# ------------------------------------------------------------------------------------------------ concurrency


def race(fn, n=2):
    results, errors = [None] * n, []
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            results[i] = fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def test_two_concurrent_runs_leave_one_remote_file(openai_env, jsonl):
    path, sha = jsonl
    # Both runs find nothing, both send; the server holds the first request until the second comes, so that they
    # overlap however late the second run starts (a loaded machine)
    openai_env.inject("POST", FILES, "delay", times=2, together=2, seconds=10)
    results = race(lambda: upload_and_wait(client_for(openai_env), path, sha, policy=FAST))
    assert openai_env.count("POST", FILES, exact=True) == 2  # both really sent
    (a, a_reused), (b, b_reused) = results
    assert a.id == b.id == one_remote_copy(openai_env, path, sha).id
    assert sorted([a_reused, b_reused]) == [False, True]


def test_two_concurrent_large_uploads_leave_one_remote_file(openai_env, big):
    path, sha = big
    openai_env.inject("POST", "/v1/uploads/*/complete", "delay", times=2, together=2, seconds=10)
    results = race(lambda: upload_and_wait(client_for(openai_env), path, sha, policy=PARTS))
    assert openai_env.count("POST", "/v1/uploads", exact=True) == 2
    assert results[0][0].id == results[1][0].id == one_remote_copy(openai_env, path, sha).id


def test_two_concurrent_task_runs_leave_one_remote_file(openai_env, jsonl):
    path, sha = jsonl
    openai_env.inject("POST", FILES, "delay", times=2, together=2, seconds=10)
    a, b = race(lambda: run_task(client_for(openai_env), path, sha))
    assert openai_env.count("POST", FILES, exact=True) == 2
    assert a.id == b.id == one_remote_copy(openai_env, path, sha).id and {a.reused, b.reused} == {False, True}
