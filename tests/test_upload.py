"""Uploads through the real SDK to the stub: idempotent by content, retried only when transient."""

from __future__ import annotations

import hashlib
import json
import time

import openai
import pytest

from ftprep.client import make_client
from ftprep.errors import InputError, RemoteError
from ftprep.remote import MalformedResponse, describe_error, is_transient, outcome_unknown, retry_after
from ftprep.remote import RemotePolicy as UploadPolicy
from ftprep.settings import FILES_CREATE_LIMIT, load_settings
from tasks.upload import (
    find_remote,
    remote_name,
    settle,
    upload_file,
    upload_once,
)


@pytest.fixture
def client(openai_env):
    return make_client(load_settings())


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "fine_tune_train.jsonl"
    path.write_bytes(b'{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}\n' * 12)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_remote_name_carries_the_content_hash():
    assert remote_name("/x/fine_tune_train.jsonl", "ab" * 32) == "fine_tune_train." + "ab" * 16 + ".jsonl"


def test_upload_once_then_reuse(client, openai_env, jsonl):
    path, sha = jsonl
    first, reused, _ = upload_once(client, str(path), sha)
    assert not reused and first.purpose == "fine-tune" and first.filename == remote_name(path, sha)
    again, reused, _ = upload_once(client, str(path), sha)
    assert reused and again.id == first.id
    assert openai_env.count("POST", "/v1/files", exact=True) == 1 and len(openai_env.files_for()) == 1
    assert openai_env.files_for()[0].read_bytes() == path.read_bytes()


def test_find_remote_ignores_failed_and_different_files(client, openai_env, jsonl):
    path, sha = jsonl
    name, size = remote_name(path, sha), path.stat().st_size
    good = openai_env.seed_file(name, path.read_bytes())
    openai_env.seed_file(name, b"other bytes")  # same name, other size
    openai_env.fail_processing_for(name, "invalid file")
    with open(path, "rb") as f:
        failed = client.files.create(file=(name, f), purpose="fine-tune")
    assert client.files.retrieve(failed.id).status == "error"
    ok = find_remote(client, name, size)
    assert ok is not None and ok.id == good.id and ok.status == "processed"
    assert find_remote(client, name, size, purpose="batch") is None
    client.files.delete(good.id)
    assert find_remote(client, name, size) is None  # only the failed one is left


@pytest.mark.parametrize(
    "status, transient", [(400, False), (401, False), (403, False), (404, False), (422, False),
                          (408, True), (409, True), (429, True), (500, True), (503, True)],
)
def test_transient_classification(client, openai_env, status, transient):
    openai_env.inject("GET", "/v1/files", "status", status=status)
    with pytest.raises(openai.APIStatusError) as info:
        client.files.list()
    assert is_transient(info.value) is transient


def test_task_retries_a_transient_failure_and_leaves_one_file(prefect_server, client, openai_env, jsonl):
    path, sha = jsonl
    openai_env.inject("POST", "/v1/files", "status", status=503)
    openai_env.inject("POST", "/v1/files", "store_then_drop")  # stored, but the client never hears of it
    uploader = upload_file.with_options(retry_delay_seconds=0, cache_policy=None, refresh_cache=True)
    remote = uploader(client, str(path), sha, 12, "train")
    # attempt 1: 503, looked again, nothing stored; attempt 2: stored then dropped, looked again, found and reused
    assert remote.reused and len(openai_env.files_for()) == 1
    assert openai_env.count("POST", "/v1/files", exact=True) == 2


def test_task_does_not_retry_a_rejected_key(prefect_server, openai_env, jsonl, monkeypatch):
    path, sha = jsonl
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-0123456789")
    bad_client = make_client(load_settings())
    uploader = upload_file.with_options(retry_delay_seconds=0, cache_policy=None, refresh_cache=True)
    with pytest.raises(RemoteError, match=r"upload of .* was refused: HTTP 401") as info:
        uploader(bad_client, str(path), sha, 12, "train")
    assert "sk-wrong-key-0123456789" not in str(info.value)
    assert openai_env.count("GET", "/v1/files") == 1 and openai_env.count("POST") == 0


def test_retry_after_prefers_milliseconds_and_is_capped(client, openai_env):
    for kw, expected in [({"retry_after_ms": "250", "retry_after": "9"}, 0.25), ({"retry_after": "2"}, 2.0),
                         ({"retry_after": "3600"}, 60.0), ({}, None), ({"retry_after": "soon"}, None)]:
        openai_env.inject("GET", "/v1/files", "status", status=429, **kw)
        with pytest.raises(openai.RateLimitError) as info:
            client.files.list()
        assert retry_after(info.value) == expected, kw


def test_describe_error_names_status_class_and_server_message(client, openai_env):
    openai_env.inject("GET", "/v1/files", "status", status=503, message="Slow down.")
    with pytest.raises(openai.APIStatusError) as info:
        client.files.list()
    assert describe_error(info.value) == "HTTP 503 (InternalServerError): Slow down."
    openai_env.inject("GET", "/v1/files", "reset")
    with pytest.raises(openai.APIConnectionError) as info:
        client.files.list()
    assert describe_error(info.value).startswith(f"connection to {openai_env.base_url.rsplit('/', 1)[0]} failed (")


def test_malformed_response_is_transient_with_unknown_outcome(client, openai_env):
    openai_env.inject("GET", "/v1/files", "malformed_json")
    with pytest.raises(json.JSONDecodeError) as info:  # the SDK raises it bare
        client.files.list()
    assert is_transient(info.value) and outcome_unknown(info.value)
    assert is_transient(MalformedResponse("no id")) and describe_error(MalformedResponse("x")).startswith("malformed")


def test_server_can_forbid_a_retry(client, openai_env):
    openai_env.inject("GET", "/v1/files", "status", status=503, headers={"x-should-retry": "false"})
    with pytest.raises(openai.APIStatusError) as info:
        client.files.list()
    assert not is_transient(info.value)


def test_settle_keeps_the_first_copy_and_every_copy_a_job_uses(client, openai_env, jsonl):
    # changed on purpose (issue 10): old duplicates are settled too, except one a queued or running job uses
    path, sha = jsonl
    name, data = remote_name(path, sha), path.read_bytes()
    old = int(time.time()) - 3600
    first = openai_env.seed_file(name, data, created_at=old)
    old_dup = openai_env.seed_file(name, data, created_at=old + 1)  # left behind by an earlier run
    used_dup = openai_env.seed_file(name, data, created_at=old + 2)
    client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=used_dup.id)
    new_dup = openai_env.seed_file(name, data)
    mine = client.files.create(file=(name, data), purpose="fine-tune")
    kept = settle(client, name, len(data), "fine-tune", mine)
    assert kept.id == first.id
    left = {f.id for f in openai_env.files_for()}
    assert left == {first.id, used_dup.id}, (old_dup.id, new_dup.id, mine.id)


def test_a_run_that_finds_several_copies_settles_them_to_one(client, openai_env, jsonl):
    path, sha = jsonl
    name, data = remote_name(path, sha), path.read_bytes()
    first = openai_env.seed_file(name, data, created_at=int(time.time()) - 600)
    openai_env.seed_file(name, data)  # a copy the server stored after an earlier run gave up
    file, reused, sent = upload_once(client, str(path), sha)
    assert (file.id, reused, sent) == (first.id, True, False)
    assert [f.id for f in openai_env.files_for()] == [first.id]


def test_a_changed_file_is_not_uploaded_under_its_old_hash(client, openai_env, jsonl):
    path, sha = jsonl
    path.write_bytes(path.read_bytes() + b"{}\n")
    with pytest.raises(InputError, match="changed since it was written.*run prepare again"):
        upload_once(client, str(path), sha)
    assert openai_env.count("POST") == 0


def test_upload_policy_from_settings(monkeypatch):
    monkeypatch.setenv("FTPREP_PROCESSING_TIMEOUT", "42")
    monkeypatch.setenv("FTPREP_UPLOAD_PART_THRESHOLD", str(64 * 1024 * 1024))
    policy = UploadPolicy.from_settings(load_settings())
    assert policy.processing_timeout == 42 and policy.part_threshold == 64 * 1024 * 1024
    assert policy.part_size == 64 * 1024 * 1024 and policy.backoff_seconds == 0.05  # conftest's base
    monkeypatch.setenv("FTPREP_UPLOAD_PART_THRESHOLD", str(10 * FILES_CREATE_LIMIT))
    assert UploadPolicy.from_settings(load_settings()).part_threshold == FILES_CREATE_LIMIT
    with pytest.raises(InputError):
        UploadPolicy(part_size=65 * 1024 * 1024)
