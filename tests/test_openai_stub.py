"""Tests of the OpenAI stub server, driven by the real ``openai`` SDK over real HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.openai_stub import StubOpenAI, mask_api_key

KEY = "sk-test-stub-key"
REPO_ROOT = Path(__file__).resolve().parents[1]


def make_client(stub: StubOpenAI, **kw: object) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    kw.setdefault("api_key", KEY)
    return openai.OpenAI(base_url=stub.base_url, **kw)  # type: ignore[arg-type]


@pytest.fixture
def client(openai_stub: StubOpenAI) -> Iterator[openai.OpenAI]:
    c = make_client(openai_stub)
    yield c
    c.close()


def wait_for(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def upload(client: openai.OpenAI, name: str = "train.jsonl", content: bytes = b'{"a": 1}\n', **kw: object):
    return client.files.create(file=(name, content), purpose=kw.pop("purpose", "fine-tune"), **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ basics


def test_base_url_and_lifecycle() -> None:
    stub = StubOpenAI()
    stub.start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", stub.base_url)
    assert stub.base_url.endswith(f":{stub.port}/v1")
    storage = stub.storage_dir
    assert storage is not None and storage.is_dir()
    c = make_client(stub)
    upload(c)  # leaves a pooled keep-alive connection open
    t0 = time.monotonic()
    stub.stop()
    assert time.monotonic() - t0 < 2.5  # a normal stop takes ~0.05 s; waiting out the deadline takes 5 s
    assert not storage.exists()
    assert not any(t.is_alive() for t in stub._handler_threads)
    with pytest.raises(openai.APIConnectionError):
        c.files.list()
    c.close()
    stub.stop()  # idempotent


def test_many_stubs_start_and_stop_fast() -> None:
    """stop() closes the connections it finds (here the SDK's kept-alive one) instead of waiting out its deadline,
    and leaves no thread running. Bounded per stop, at half the deadline, not by a wall-clock budget for all 15
    cycles (3 s, which a loaded machine exceeded: 3.4 s with load average 10 on 2 cores)."""
    for _ in range(15):
        stub = StubOpenAI().start()
        with make_client(stub) as c:
            assert c.files.list().data == []
            threads = [stub._thread, *stub._handler_threads]  # with the kept-alive connection's handler
            assert len(threads) == 2
            t0 = time.monotonic()
            stub.stop(timeout=5.0)
            assert time.monotonic() - t0 < 2.5  # a normal stop takes ~0.05 s; waiting out the deadline takes 5 s
            assert not [t for t in threads if t.is_alive()]


def test_round_trip(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    content = b'{"messages": [{"role": "user", "content": "hi"}]}\n' * 3
    before = int(time.time())
    f = upload(client, "train.jsonl", content)
    assert re.fullmatch(r"file-[0-9a-f]{24}", f.id)
    assert (f.object, f.bytes, f.filename, f.purpose) == ("file", len(content), "train.jsonl", "fine-tune")
    assert (f.status, f.status_details, f.expires_at) == ("processed", None, None)
    assert before <= f.created_at <= time.time()

    assert client.files.retrieve(f.id) == f
    assert [x.id for x in client.files.list()] == [f.id]
    assert [x.id for x in client.files.list(purpose="fine-tune")] == [f.id]
    assert list(client.files.list(purpose="batch")) == []
    assert client.files.content(f.id).content == content
    assert [s.id for s in openai_stub.files_for("fine-tune")] == [f.id]
    assert openai_stub.file_content(f.id) == content

    deleted = client.files.delete(f.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (f.id, "file", True)
    assert list(client.files.list()) == []
    assert openai_stub.files_for() == []
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(f.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(f.id)

    rec = openai_stub.requests[0]
    assert (rec.method, rec.path, rec.status, rec.fault) == ("POST", "/v1/files", 200, None)
    assert rec.headers["Authorization"] == f"Bearer {KEY}" == rec.headers["authorization"]
    assert rec.form == {"purpose": "fine-tune"}
    assert rec.filename == "train.jsonl"
    assert rec.body_size > len(content)
    assert rec.file_id == f.id
    assert openai_stub.count("POST", "/v1/files") == 1
    assert openai_stub.count("GET", "/v1/files") == 8  # list x4, retrieve x2, content x2
    assert openai_stub.count("GET", "/v1/files", exact=True) == 4
    assert openai_stub.count(None, "/v1/files/") == 6  # retrieve, content, delete: x2 each
    openai_stub.reset_records()
    assert openai_stub.requests == [] and openai_stub.count() == 0


def test_upload_from_open_file_with_expiry(openai_stub: StubOpenAI, client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"x" * 1000)
    with path.open("rb") as fh:
        f = client.files.create(file=fh, purpose="batch", expires_after={"anchor": "created_at", "seconds": 7200})
    assert (f.filename, f.bytes, f.purpose) == ("data.jsonl", 1000, "batch")
    assert f.expires_at is not None and abs(f.expires_at - (f.created_at + 7200)) <= 1
    assert openai_stub.requests[-1].form == {
        "purpose": "batch",
        "expires_after[anchor]": "created_at",
        "expires_after[seconds]": "7200",
    }
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.jsonl", b"x"), purpose="batch",
                            expires_after={"anchor": "created_at", "seconds": 10})


def test_large_upload_is_streamed_to_disk(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    content = os.urandom(1024 * 1024) * 24  # 24 MiB, spans many read chunks
    f = upload(client, "big.jsonl", content)
    assert f.bytes == len(content)
    stored = openai_stub.files_for()[0]
    assert all(seg.parent == openai_stub.storage_dir for seg in stored.segments)
    assert client.files.content(f.id).content == content


def test_create_validation_errors(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        upload(client, purpose="not-a-purpose")
    assert exc.value.body["param"] == "purpose"  # type: ignore[index]
    # like files.create(), low-level multipart posts must set the Content-Type explicitly
    multipart = {"headers": {"Content-Type": "multipart/form-data"}}
    with pytest.raises(openai.BadRequestError) as exc:  # no `file` part
        client.post("/files", cast_to=object, body={"purpose": "fine-tune"}, files=[("other", ("a", b"b"))],
                    options=multipart)
    assert exc.value.body["param"] == "file"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as exc:  # no `purpose` field
        client.post("/files", cast_to=object, body={}, files=[("file", ("a.jsonl", b"b"))], options=multipart)
    assert exc.value.body["param"] == "purpose"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="multipart"):  # not multipart at all
        client.post("/files", cast_to=object, body={"purpose": "fine-tune"})
    openai_stub.max_file_bytes = 10
    with pytest.raises(openai.BadRequestError, match="too large"):
        upload(client, content=b"x" * 11)
    assert openai_stub.files_for() == []
    assert list(openai_stub.storage_dir.iterdir()) == []  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError, match=r"Invalid URL \(GET /v1/nothing\)"):
        client.get("/nothing", cast_to=object)


# ------------------------------------------------------------------------------------------- listing


def test_list_pagination_and_order(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    ids = [upload(client, f"f{i}.jsonl").id for i in range(23)]
    batch_ids = [upload(client, f"b{i}.jsonl", purpose="batch").id for i in range(3)]
    openai_stub.reset_records()

    # default order is desc (newest first); the SDK follows `after` cursors across pages
    assert [f.id for f in client.files.list(purpose="fine-tune", limit=5)] == ids[::-1]
    assert openai_stub.count("GET", "/v1/files", exact=True) == 5
    afters = [r.query.get("after") for r in openai_stub.requests]
    assert afters == [None, ids[-5], ids[-10], ids[-15], ids[-20]]
    assert all(r.query["limit"] == "5" and r.query["purpose"] == "fine-tune" for r in openai_stub.requests)

    assert [f.id for f in client.files.list(limit=4, order="asc")] == ids + batch_ids
    assert [f.id for f in client.files.list()] == (ids + batch_ids)[::-1]  # default limit 10000: one page

    raw = client.files.with_raw_response.list(purpose="fine-tune", limit=3, order="asc").http_response.json()
    assert raw["object"] == "list"
    assert [d["id"] for d in raw["data"]] == ids[:3]
    assert (raw["first_id"], raw["last_id"], raw["has_more"]) == (ids[0], ids[2], True)
    raw = client.files.with_raw_response.list(purpose="batch", after=batch_ids[1]).http_response.json()
    assert ([d["id"] for d in raw["data"]], raw["has_more"]) == ([batch_ids[0]], False)
    raw = client.files.with_raw_response.list(purpose="vision").http_response.json()
    assert raw == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}

    # a deleted file still works as a cursor
    client.files.delete(ids[10])
    assert [f.id for f in client.files.list(purpose="fine-tune", after=ids[10], order="asc")] == ids[11:]
    for bad in ({"limit": 0}, {"limit": 10001}, {"order": "sideways"}, {"after": "file-unknown"}):
        with pytest.raises(openai.BadRequestError):
            client.files.list(**bad)  # type: ignore[arg-type]


def test_seed_file(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    old = openai_stub.seed_file("old.jsonl", b"{}\n", created_at=1_000)
    new = upload(client, "new.jsonl")
    assert [f.id for f in client.files.list()] == [new.id, old.id]
    assert client.files.retrieve(old.id).created_at == 1_000
    assert old["filename"] == "old.jsonl" and old.read_bytes() == b"{}\n"


# ------------------------------------------------------------------------------------- auth & errors


def test_wrong_key_gets_masked_401(openai_stub: StubOpenAI) -> None:
    wrong = "sk-test-something-key"
    with make_client(openai_stub, api_key=wrong) as c:
        with pytest.raises(openai.AuthenticationError) as exc:
            upload(c)
    err = exc.value
    assert err.status_code == 401
    assert err.body == {
        "message": "Incorrect API key provided: sk-tes***********-key. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert err.code == "invalid_api_key"
    assert wrong not in err.response.text and KEY not in err.response.text
    assert openai_stub.files_for() == []
    assert openai_stub.requests[-1].status == 401
    assert openai_stub.requests[-1].headers["authorization"] == f"Bearer {wrong}"


@pytest.mark.parametrize("key", ["sk-test-stub-key", "sk-proj-" + "a" * 40 + "wxyz", "short", "sk-12345678901"])
def test_mask_api_key_never_reveals_the_key(key: str) -> None:
    masked = mask_api_key(key)
    assert key not in masked and "*" in masked
    if len(key) >= 14:
        assert masked.startswith(key[:6]) and masked.endswith(key[-4:]) and len(masked) == len(key)


def test_missing_key_and_auth_disabled() -> None:
    with StubOpenAI() as stub:
        conn = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=5)
        conn.request("GET", "/v1/files")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 401 and body["error"]["message"].startswith("You didn't provide an API key")
        conn.close()
    with StubOpenAI(api_key=None) as stub, make_client(stub, api_key="anything") as c:
        assert upload(c).status == "processed"


def test_not_found_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.files.retrieve("file-doesnotexist")
    assert exc.value.status_code == 404
    assert exc.value.body == {
        "message": "No such File object: file-doesnotexist",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    }
    assert exc.value.code is None and exc.value.type == "invalid_request_error"


# ------------------------------------------------------------------------------------------- faults


def test_fault_status_429_with_retry_after(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    fault = openai_stub.inject("POST", "/v1/files", "status", status=429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as exc:
        upload(client)
    assert exc.value.status_code == 429
    assert exc.value.response.headers["retry-after"] == "7"
    assert exc.value.body == {
        "message": "Rate limit reached for requests",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert fault.hits == 1 and fault.remaining == 0
    rec = openai_stub.requests[-1]
    assert (rec.fault, rec.status, rec.file_id) == ("status", 429, None)
    assert rec.body_size > 0  # the body was read (and discarded)
    assert openai_stub.files_for() == []
    assert upload(client).status == "processed"  # consumed: the next request is handled normally
    assert openai_stub.count("POST", "/v1/files") == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_fault_status_5xx(openai_stub: StubOpenAI, client: openai.OpenAI, status: int) -> None:
    openai_stub.inject("GET", "/v1/files", "status", status=status)
    with pytest.raises(openai.InternalServerError) as exc:
        client.files.list()
    assert exc.value.status_code == status
    assert exc.value.type == "server_error"


def test_fault_status_custom_fields_and_store(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    openai_stub.inject("POST", "/v1/files", "status", status=400, message="nope", code="bad", param="file")
    with pytest.raises(openai.BadRequestError) as exc:
        upload(client)
    assert exc.value.body == {"message": "nope", "type": "invalid_request_error", "param": "file", "code": "bad"}
    assert openai_stub.files_for() == []
    openai_stub.inject("POST", "/v1/files", "status", status=500, store=True)
    with pytest.raises(openai.InternalServerError):
        upload(client, "stored-anyway.jsonl")
    assert [f.filename for f in openai_stub.files_for()] == ["stored-anyway.jsonl"]
    assert openai_stub.requests[-1].file_id == openai_stub.files_for()[0].id


def test_sdk_retries_honour_retry_after_ms(openai_stub: StubOpenAI) -> None:
    openai_stub.inject("POST", "/v1/files", "status", times=2, status=429, retry_after=60, retry_after_ms=20)
    with make_client(openai_stub, max_retries=2) as c:
        t0 = time.monotonic()
        f = upload(c)
        elapsed = time.monotonic() - t0
    assert elapsed < 2  # `retry-after-ms` (preferred by the SDK) wins over `retry-after: 60`
    assert [r.fault for r in openai_stub.requests] == ["status", "status", None]
    assert [r.headers["x-stainless-retry-count"] for r in openai_stub.requests] == ["0", "1", "2"]
    assert [s.id for s in openai_stub.files_for()] == [f.id]


def test_sdk_obeys_x_should_retry(openai_stub: StubOpenAI) -> None:
    openai_stub.inject("GET", "/v1/files", "status", times=None, status=503, headers={"x-should-retry": "false"})
    with make_client(openai_stub, max_retries=3) as c, pytest.raises(openai.InternalServerError):
        c.files.list()
    assert openai_stub.count("GET", "/v1/files") == 1


def test_fault_reset(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    first = upload(client, "first.jsonl")  # opens a keep-alive connection
    openai_stub.inject("POST", "/v1/files", "reset")
    with pytest.raises(openai.APIConnectionError) as exc:
        upload(client, "reset.jsonl")
    assert not isinstance(exc.value, openai.APITimeoutError)
    rec = openai_stub.requests[-1]
    assert (rec.fault, rec.status, rec.body_size, rec.form) == ("reset", None, 0, {})
    assert [f.id for f in openai_stub.files_for()] == [first.id]
    # the server is fine afterwards; the SDK simply opens a new connection
    third = upload(client, "third.jsonl")
    assert [f.id for f in openai_stub.files_for()] == [first.id, third.id]
    ports = [r.client_address[1] for r in openai_stub.requests]
    assert ports[0] == ports[1] != ports[2]


def test_fault_store_then_drop(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    openai_stub.inject("POST", "/v1/files", "store_then_drop")
    with pytest.raises(openai.APIConnectionError) as exc:
        upload(client, "dropped.jsonl", b"payload\n")
    assert not isinstance(exc.value, openai.APITimeoutError)
    (stored,) = openai_stub.files_for()
    assert (stored.filename, stored.read_bytes()) == ("dropped.jsonl", b"payload\n")
    rec = openai_stub.requests[-1]
    assert (rec.fault, rec.status, rec.file_id) == ("store_then_drop", None, stored.id)
    assert [f.id for f in client.files.list()] == [stored.id]


def test_fault_delay_times_out_but_stores(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    openai_stub.inject("POST", "/v1/files", "delay", seconds=1.5)
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        upload(client, "slow.jsonl", timeout=0.15)
    assert time.monotonic() - t0 < 1.2  # gave up long before the answer (slack for a loaded machine)
    assert openai_stub.files_for() == []  # still sleeping, not handled yet
    wait_for(lambda: openai_stub.files_for(), timeout=5)
    assert [f.filename for f in openai_stub.files_for()] == ["slow.jsonl"]
    assert openai_stub.requests[-1].fault == "delay"


def test_fault_delay_after_and_within_timeout(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    openai_stub.inject("POST", "/v1/files", "delay", seconds=0.4, when="after")
    with pytest.raises(openai.APITimeoutError):
        upload(client, "late-answer.jsonl", timeout=0.15)
    wait_for(lambda: openai_stub.files_for(), timeout=5)  # (a loaded machine may store it after the client gave up)
    assert [f.filename for f in openai_stub.files_for()] == ["late-answer.jsonl"]  # stored before the sleep
    openai_stub.inject("GET", "/v1/files", "delay", seconds=0.05)
    assert len(client.files.list().data) == 1  # a delay shorter than the timeout is just slow


def test_fault_delay_together_holds_requests_until_the_last_comes(openai_stub: StubOpenAI,
                                                                 client: openai.OpenAI) -> None:
    """``together``: the first request waits for the second, however late that one starts, and no longer."""
    import threading

    openai_stub.inject("POST", "/v1/files", "delay", times=2, together=2, seconds=10)
    done: list[float] = []
    first = threading.Thread(target=lambda: (upload(client, "first.jsonl"), done.append(time.monotonic())))
    first.start()
    time.sleep(0.6)
    assert not done and openai_stub.files_for() == []  # held: the second has not come yet
    sent = time.monotonic()
    upload(client, "second.jsonl")
    first.join(10)
    assert done and done[0] - sent < 2  # released by the second, not by the ten seconds
    assert sorted(f.filename for f in openai_stub.files_for()) == ["first.jsonl", "second.jsonl"]
    openai_stub.inject("GET", "/v1/files", "delay", together=2, seconds=0.3)  # a request alone: at most seconds
    t0 = time.monotonic()
    assert len(client.files.list().data) == 2
    assert 0.25 < time.monotonic() - t0 < 3


def test_fault_malformed_json(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    openai_stub.inject("POST", "/v1/files", "malformed_json")
    # The SDK does not wrap this: a plain json.JSONDecodeError (a ValueError) escapes, no retry.
    with pytest.raises(json.JSONDecodeError):
        upload(client)
    assert openai_stub.files_for() == []
    assert openai_stub.requests[-1].status == 200
    openai_stub.inject("POST", "/v1/files", "malformed_json", store=True, body=b"<html>")
    with make_client(openai_stub, max_retries=2) as c, pytest.raises(json.JSONDecodeError):
        upload(c, "kept.jsonl")
    assert [f.filename for f in openai_stub.files_for()] == ["kept.jsonl"]
    assert openai_stub.count("POST", "/v1/files") == 2


def test_fault_matching_and_consumption(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    f = upload(client)
    wildcard = openai_stub.inject("GET", "/v1/files/*", "status", times=2, status=500)
    exact = openai_stub.inject("*", "/v1/files", "status", times=None, status=503)
    other_method = openai_stub.inject("DELETE", "/v1/files/*", "reset")
    with pytest.raises(openai.InternalServerError) as exc:
        client.files.list()  # only the exact-path fault matches /v1/files
    assert exc.value.status_code == 503
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as exc:
            client.files.retrieve(f.id)
        assert exc.value.status_code == 500
    assert client.files.retrieve(f.id).id == f.id  # wildcard fault used up
    assert client.files.content(f.id).content
    with pytest.raises(openai.InternalServerError):
        upload(client)  # "*" matches any method
    assert (wildcard.hits, wildcard.remaining, exact.hits, exact.remaining, other_method.hits) == (2, 0, 2, None, 0)
    assert [r.fault for r in openai_stub.requests[1:]] == ["status"] * 3 + [None, None, "status"]
    openai_stub.clear_faults()
    assert [x.id for x in client.files.list()] == [f.id]


def test_inject_validates_arguments(openai_stub: StubOpenAI) -> None:
    with pytest.raises(ValueError):
        openai_stub.inject("GET", "/v1/files", "explode")
    with pytest.raises(TypeError):
        openai_stub.inject("GET", "/v1/files", "status", statuss=500)
    with pytest.raises(ValueError):
        openai_stub.inject("GET", "/v1/files", "delay", when="during")


# ----------------------------------------------------------------------------------------- processing


def test_processing_polls(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    openai_stub.processing_polls = 2
    openai_stub.fail_processing_for("bad", "Invalid file format for Fine-Tuning API. Must be .jsonl")
    good = upload(client, "good.jsonl")
    bad = upload(client, "bad.jsonl")
    assert good.status == bad.status == "uploaded"
    assert bad.status_details is None
    assert client.files.retrieve(good.id).status == "uploaded"
    assert {f.status for f in client.files.list()} == {"uploaded"}  # listing does not count as a poll
    assert client.files.retrieve(good.id).status == "processed"
    assert client.files.retrieve(good.id).status == "processed"
    done = client.files.wait_for_processing(bad.id, poll_interval=0.01)
    assert (done.status, done.status_details) == ("error", "Invalid file format for Fine-Tuning API. Must be .jsonl")
    assert openai_stub.count("GET", f"/v1/files/{bad.id}") == 2

    openai_stub.processing_polls = 0  # read at upload time
    immediate = upload(client, "also-bad.jsonl")
    assert (immediate.status, immediate.status_details) == ("error", done.status_details)


# -------------------------------------------------------------------------------------------- uploads


def test_uploads_api_round_trip(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    chunks = [os.urandom(3 * 1024 * 1024), os.urandom(2 * 1024 * 1024), b"tail\n"]
    total = sum(map(len, chunks))
    up = client.uploads.create(bytes=total, filename="huge.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    assert re.fullmatch(r"upload_[0-9a-f]{24}", up.id)
    assert (up.object, up.status, up.bytes, up.filename, up.purpose, up.file) == (
        "upload", "pending", total, "huge.jsonl", "fine-tune", None
    )
    assert up.expires_at == up.created_at + 3600
    parts = [client.uploads.parts.create(up.id, data=chunk) for chunk in chunks]
    assert all(p.object == "upload.part" and p.upload_id == up.id and p.id.startswith("part_") for p in parts)
    assert openai_stub.requests[-1].filename == "upload"  # the SDK names raw bytes "upload"
    assert len(list(openai_stub.storage_dir.iterdir())) == 3  # type: ignore[union-attr]

    order = [parts[1], parts[2], parts[0]]  # the file is the concatenation in part_ids order
    expected = chunks[1] + chunks[2] + chunks[0]
    with pytest.raises(openai.BadRequestError, match="md5"):
        client.uploads.complete(up.id, part_ids=[p.id for p in order], md5="0" * 32)
    with pytest.raises(openai.BadRequestError, match="does not match"):
        client.uploads.complete(up.id, part_ids=[p.id for p in order[:2]])
    done = client.uploads.complete(up.id, part_ids=[p.id for p in order], md5=hashlib.md5(expected).hexdigest())
    assert done.status == "completed" and done.file is not None
    assert (done.file.bytes, done.file.filename, done.file.purpose, done.file.status) == (
        total, "huge.jsonl", "fine-tune", "processed"
    )
    assert client.files.content(done.file.id).content == expected
    assert [f.id for f in client.files.list(purpose="fine-tune")] == [done.file.id]
    complete_rec = openai_stub.requests[-3]
    assert (complete_rec.path, complete_rec.file_id) == (f"/v1/uploads/{up.id}/complete", done.file.id)
    assert complete_rec.json["part_ids"] == [p.id for p in order]

    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(up.id, data=b"more")
    with pytest.raises(openai.NotFoundError):
        client.uploads.parts.create("upload_nope", data=b"x")


def test_uploads_cancel_and_validation(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    up = client.uploads.create(bytes=4, filename="c.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    client.uploads.parts.create(up.id, data=b"abcd")
    cancelled = client.uploads.cancel(up.id)
    assert cancelled.status == "cancelled"
    assert list(openai_stub.storage_dir.iterdir()) == []  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(up.id, data=b"abcd")
    with pytest.raises(openai.BadRequestError):
        client.uploads.create(bytes=4, filename="c.jsonl", mime_type="text/plain", purpose="nope")  # type: ignore[arg-type]
    openai_stub.max_part_bytes = 3
    up = client.uploads.create(bytes=4, filename="c.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="too large"):
        client.uploads.parts.create(up.id, data=b"abcd")


def test_upload_file_chunked_helper(openai_stub: StubOpenAI, client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    content = os.urandom(1_000_000)
    path.write_bytes(content)
    done = client.uploads.upload_file_chunked(
        file=path, mime_type="application/jsonl", purpose="fine-tune", part_size=300_000
    )
    assert done.file is not None and done.file.filename == "train.jsonl"
    assert openai_stub.count("POST", "/v1/uploads/") == 5  # 4 parts + complete
    assert openai_stub.file_content(done.file.id) == content


# ------------------------------------------------------------------------------------------- protocol


def test_keep_alive_and_content_length(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    for i in range(5):
        upload(client, f"{i}.jsonl")
    client.files.list()
    assert len({r.client_address for r in openai_stub.requests}) == 1  # one reused connection
    raw = client.files.with_raw_response.list()
    assert raw.http_response.http_version == "HTTP/1.1"
    assert int(raw.headers["content-length"]) == len(raw.http_response.content)
    assert raw.headers["x-request-id"].startswith("req_")


def test_chunked_request_body(openai_stub: StubOpenAI) -> None:
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + b"line\r\n--not-a-boundary\r\n" + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", openai_stub.port, timeout=5)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    conn.request("POST", "/v1/files", body=iter([body[:50], body[50:]]), headers=headers, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    f = json.loads(resp.read())
    assert openai_stub.file_content(f["id"]) == b"line\r\n--not-a-boundary\r\n"
    conn.request("GET", f"/v1/files/{f['id']}", headers=headers)  # same connection still works
    assert json.loads(conn.getresponse().read())["id"] == f["id"]
    conn.close()


def test_standalone_module() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.openai_stub", "--port", "0", "--api-key", "sk-test-standalone-key"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url), base_url
        with openai.OpenAI(api_key="sk-test-standalone-key", base_url=base_url, max_retries=0) as c:
            f = c.files.create(file=("s.jsonl", b"{}\n"), purpose="fine-tune")
            assert [x.id for x in c.files.list()] == [f.id]
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
