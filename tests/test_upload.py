"""Uploads through the real SDK to the stub: idempotent by content, retried only when transient."""

from __future__ import annotations

import hashlib

import openai
import pytest

from ftprep.client import make_client
from ftprep.errors import RemoteError
from ftprep.settings import load_settings
from tasks.upload import find_remote, is_transient, remote_name, upload_file, upload_once


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
    first, reused = upload_once(client, str(path), sha)
    assert not reused and first.purpose == "fine-tune" and first.filename == remote_name(path, sha)
    again, reused = upload_once(client, str(path), sha)
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
    # attempt 1: 503; attempt 2: stored then dropped; attempt 3: finds the stored copy and reuses it
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
