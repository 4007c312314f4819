"""Fine-tuning jobs and chat completions in the OpenAI stub, driven by the real ``openai`` SDK over HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl

import openai
import pytest

from tests.openai_stub import DEFAULT_JOB_SCRIPT, StubOpenAI


def example(i: int, price: float) -> bytes:
    record = {"messages": [
        {"role": "system", "content": "You estimate prices of items. Reply only with the price, no explanation"},
        {"role": "user", "content": f"How much does this cost?\n\nWidget model {i}"},
        {"role": "assistant", "content": f"Price is ${price:.2f}"},
    ]}
    return (json.dumps(record) + "\n").encode()


TRAIN = b"".join(example(i, 10.0 + i) for i in range(12))
VALID = b"".join(example(100 + i, 3.0 * i) for i in range(4))


@pytest.fixture
def client(openai_stub: StubOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=openai_stub.api_key, base_url=openai_stub.base_url, max_retries=0) as c:
        yield c


def upload_pair(client: openai.OpenAI) -> tuple[str, str]:
    train = client.files.create(file=("train.jsonl", TRAIN), purpose="fine-tune")
    valid = client.files.create(file=("valid.jsonl", VALID), purpose="fine-tune")
    return train.id, valid.id


def run_to_end(client: openai.OpenAI, job_id: str, max_polls: int = 10) -> list[str]:
    statuses = []
    for _ in range(max_polls):
        job = client.fine_tuning.jobs.retrieve(job_id)
        statuses.append(job.status)
        if job.status in ("succeeded", "failed", "cancelled"):
            return statuses
    raise AssertionError(f"job did not finish: {statuses}")


# ------------------------------------------------------------------------------------------ lifecycle


def test_job_from_two_files_runs_to_success(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    train, valid = upload_pair(client)
    job = client.fine_tuning.jobs.create(
        model="gpt-4o-mini-2024-07-18", training_file=train, validation_file=valid, suffix="pricer", seed=42,
        metadata={"run": "a"}, hyperparameters={"n_epochs": 2},
    )
    assert re.fullmatch(r"ftjob-[0-9a-f]{24}", job.id)
    assert (job.object, job.status, job.model, job.training_file, job.validation_file, job.seed) == (
        "fine_tuning.job", "validating_files", "gpt-4o-mini-2024-07-18", train, valid, 42
    )
    assert (job.fine_tuned_model, job.trained_tokens, job.finished_at, job.error, job.result_files) == (
        None, None, None, None, []
    )
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == "auto"
    assert job.method is not None and job.method.type == "supervised"
    assert job.metadata == {"run": "a"} and job.organization_id.startswith("org-")
    rec = openai_stub.requests[-1]
    assert (rec.path, rec.status, rec.job_id, rec.json["suffix"]) == ("/v1/fine_tuning/jobs", 200, job.id, "pricer")

    assert run_to_end(client, job.id) == ["queued", "running", "succeeded"]
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded"  # terminal: further retrieves change nothing
    assert re.fullmatch(r"ft:gpt-4o-mini-2024-07-18:stub-org:pricer:[A-Za-z0-9]{8}", done.fine_tuned_model or "")
    assert done.trained_tokens == len(TRAIN) // 4 * 2
    assert done.finished_at is not None and done.finished_at >= done.created_at and done.estimated_finish is None
    assert (done.hyperparameters.n_epochs, done.hyperparameters.batch_size) == (2, 1)  # "auto" resolved
    assert done.method.supervised.hyperparameters.n_epochs == 2  # type: ignore[union-attr]
    [results_id] = done.result_files
    results = client.files.retrieve(results_id)
    assert (results.purpose, results.filename, results.status) == ("fine-tune-results", "step_metrics.csv",
                                                                   "processed")
    csv = client.files.content(results_id).text.splitlines()
    assert csv[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert len(csv) == 1 + 2 * 12  # one row per step: n_epochs * examples / batch_size
    assert openai_stub.fine_tuned_models == [done.fine_tuned_model]
    assert [j["id"] for j in openai_stub.jobs] == [job.id] and openai_stub.jobs[0]["status"] == "succeeded"
    assert openai_stub.count("GET", f"/v1/fine_tuning/jobs/{job.id}", exact=True) == 4


def test_events_newest_first_and_paginated(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    train, valid = upload_pair(client)
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train,
                                         validation_file=valid)
    first = client.fine_tuning.jobs.list_events(job.id)
    assert [e.message for e in first.data] == [
        f"Validating training file: {train} and validation file: {valid}",
        f"Created fine-tuning job: {job.id}",
    ]
    run_to_end(client, job.id)
    openai_stub.reset_records()

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=3))  # the SDK follows `after` cursors
    assert [e.id for e in events] == [e["id"] for e in openai_stub.job(job.id).events[::-1]]
    assert len({e.id for e in events}) == len(events) and all(e.id.startswith("ftevent-") for e in events)
    pages = openai_stub.requests
    assert len(pages) == -(-len(events) // 3)
    assert [r.query.get("after") for r in pages] == [None] + [events[i].id for i in range(2, len(events) - 1, 3)]
    messages = [e.message for e in reversed(events)]  # oldest first
    assert messages[:4] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {train} and validation file: {valid}",
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
    ]
    assert messages[-3:] == ["Checkpoint created at step 36", "New fine-tuned model created",
                             "The job has successfully completed"]
    metrics = [e for e in reversed(events) if e.type == "metrics"]
    assert [e.data["step"] for e in metrics] == [1, 9, 18, 27, 36]  # type: ignore[index]
    assert metrics[0].message.startswith("Step 1/36: training loss=") and "validation loss=" in metrics[0].message
    assert all(e.object == "fine_tuning.job.event" and e.level == "info" for e in events)

    after = client.fine_tuning.jobs.list_events(job.id, after=events[1].id, limit=2)
    assert [e.id for e in after.data] == [e.id for e in events[2:4]] and after.has_more
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.list_events(job.id, after="ftevent-nope")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.list_events("ftjob-nope")


def test_failing_script_ends_in_failed_with_error(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    train, _valid = upload_pair(client)
    message = "Training file has 3 example(s), but must have at least 10 examples"
    openai_stub.fail_jobs(message=message, code="invalid_training_file", param="training_file")
    assert openai_stub.job_script == ["validating_files", "failed"]
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train)
    assert run_to_end(client, job.id) == ["failed"]
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.error is not None
    assert (failed.error.code, failed.error.message, failed.error.param) == (
        "invalid_training_file", message, "training_file"
    )
    assert (failed.fine_tuned_model, failed.result_files, failed.trained_tokens) == (None, [], None)
    last = client.fine_tuning.jobs.list_events(job.id, limit=1).data[0]
    assert (last.level, last.message) == ("error", f"The job failed due to an invalid training file. {message}")

    openai_stub.fail_jobs("Out of capacity", code="server_error", after="running")
    late = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train)
    assert run_to_end(client, late.id) == ["queued", "running", "failed"]
    assert client.fine_tuning.jobs.retrieve(late.id).error.code == "server_error"  # type: ignore[union-attr]
    assert openai_stub.fine_tuned_models == []


def test_custom_script_and_advance(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    train, _valid = upload_pair(client)
    openai_stub.job_script = ["validating_files", "queued", "running", "running", "running", "succeeded"]
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=train)
    openai_stub.job_script = ["queued"]  # jobs keep the script they were created with; this one never starts
    stuck = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=train)
    assert stuck.status == "queued"
    assert [client.fine_tuning.jobs.retrieve(stuck.id).status for _ in range(3)] == ["queued"] * 3
    assert run_to_end(client, job.id) == ["queued", "running", "running", "running", "succeeded"]
    assert client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model.startswith("ft:gpt-4o-mini:stub-org::")  # type: ignore[union-attr]
    openai_stub.job_script = DEFAULT_JOB_SCRIPT
    quick = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=train)
    assert openai_stub.advance_job(quick.id, 5)["status"] == "succeeded"  # no requests needed
    for bad in ([], ["queued", "sideways"], ["succeeded", "running"]):
        with pytest.raises(ValueError):
            openai_stub.job_script = bad


def test_cancel(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    train, _valid = upload_pair(client)
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.list_events(job.id, limit=1).data[0].message == "The job has been cancelled"
    with pytest.raises(openai.BadRequestError, match="cancelled"):
        client.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.cancel("ftjob-nope")
    assert openai_stub.count("POST", f"/v1/fine_tuning/jobs/{job.id}/cancel") == 2


def test_list_newest_first_with_metadata_filter(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    train, _valid = upload_pair(client)
    runs = ["a", "b", "a", None, "a"]
    ids = [client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train,
                                          metadata={"run": r, "team": "x"} if r else None).id for r in runs]
    openai_stub.reset_records()
    assert [j.id for j in client.fine_tuning.jobs.list()] == ids[::-1]
    page = client.fine_tuning.jobs.list(limit=2)
    assert (page.object, [j.id for j in page.data], page.has_more) == ("list", ids[:2:-1], True)  # type: ignore[attr-defined]

    a_jobs = [j.id for j in client.fine_tuning.jobs.list(metadata={"run": "a"}, limit=2)]
    assert a_jobs == [ids[4], ids[2], ids[0]]
    sent = openai_stub.requests[-1]
    assert ("metadata[run]", "a") in parse_qsl(sent.query_string) and sent.query["after"] == ids[2]
    both = client.fine_tuning.jobs.list(metadata={"run": "b", "team": "x"})
    assert [j.id for j in both] == [ids[1]]
    assert list(client.fine_tuning.jobs.list(metadata={"run": "c"})) == []
    nulls = client.fine_tuning.jobs.list(extra_query={"metadata": "null"})
    assert [j.id for j in nulls] == [ids[3]]
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.list(after="ftjob-nope")


# ------------------------------------------------------------------------------------------- errors


def test_unprocessed_or_unusable_file_is_400(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    openai_stub.processing_polls = 2
    train = client.files.create(file=("train.jsonl", TRAIN), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as exc:
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train.id)
    assert exc.value.body == {"message": f"File {train.id} is not ready", "type": "invalid_request_error",
                              "param": "training_file", "code": "file_not_ready"}
    client.files.wait_for_processing(train.id, poll_interval=0.01)

    batch = client.files.create(file=("b.jsonl", b"{}\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'") as exc:
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train.id,
                                       validation_file=batch.id)
    assert exc.value.body["param"] == "validation_file"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="invalid training_file: file-nope"):
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file="file-nope")
    with pytest.raises(openai.BadRequestError) as exc:
        client.fine_tuning.jobs.create(model="not-a-model", training_file=train.id)
    assert exc.value.code == "model_not_available"
    assert openai_stub.jobs == []
    assert client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train.id).id


# --------------------------------------------------------------------------------------------- chat


def test_chat_completion_default_and_scripted_reply(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "You estimate prices."},
                {"role": "user", "content": "How much does this cost?\n\nA 1,000 piece puzzle, 2 boxes"}]
    chat = client.chat.completions.create(model="gpt-4o-mini", messages=messages, seed=42,  # type: ignore[arg-type]
                                          max_completion_tokens=20, temperature=0)
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{24}", chat.id)
    assert (chat.object, chat.model, len(chat.choices)) == ("chat.completion", "gpt-4o-mini", 1)
    choice = chat.choices[0]
    assert (choice.index, choice.finish_reason, choice.message.role) == (0, "stop", "assistant")
    assert choice.message.content == "Price is $1500.00"  # 1,000 * price_factor 1.5
    assert chat.usage is not None and chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens
    rec = openai_stub.requests[-1]
    assert (rec.path, rec.status, rec.json["seed"], rec.json["messages"]) == (
        "/v1/chat/completions", 200, 42, messages)
    no_number = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hat"}])
    again = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hat"}])
    assert no_number.choices[0].message.content == again.choices[0].message.content  # deterministic
    assert re.fullmatch(r"Price is \$\d+\.\d\d", no_number.choices[0].message.content or "")

    seen = []
    openai_stub.chat_reply = lambda msgs, model: seen.append((msgs, model)) or f"Price is $7.00 from {model}"
    chat = client.chat.completions.create(model="gpt-4.1-nano-2025-04-14", messages=messages)  # type: ignore[arg-type]
    assert chat.choices[0].message.content == "Price is $7.00 from gpt-4.1-nano-2025-04-14"
    assert seen == [(messages, "gpt-4.1-nano-2025-04-14")]
    cut = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=2)  # type: ignore[arg-type]
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("Price is", "length")


def test_unknown_model_is_404_until_fine_tuned(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    hello = [{"role": "user", "content": "hello"}]
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="gpt-nonexistent", messages=hello)  # type: ignore[arg-type]
    assert exc.value.body == {
        "message": "The model `gpt-nonexistent` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
    train, _valid = upload_pair(client)
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train, suffix="p")
    done = openai_stub.advance_job(job.id, 2)
    assert done["status"] == "running" and done["fine_tuned_model"] is None
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ft:gpt-4o-mini-2024-07-18:stub-org:p:abcdefgh", messages=hello)  # type: ignore[arg-type]
    model = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    assert model is not None
    assert client.chat.completions.create(model=model, messages=hello).model == model  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    with pytest.raises(openai.BadRequestError, match="stream"):
        client.chat.completions.create(model="gpt-4o-mini", messages=hello, stream=True)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- faults


def test_faults_on_job_and_chat_paths(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    train, _valid = upload_pair(client)
    openai_stub.inject("POST", "/v1/fine_tuning/jobs", "status", status=500, store=True)
    with pytest.raises(openai.InternalServerError):
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train)
    [stored] = openai_stub.jobs  # handled for real, then answered with the error
    assert openai_stub.requests[-1].job_id == stored["id"] and openai_stub.requests[-1].fault == "status"

    openai_stub.inject("GET", "/v1/fine_tuning/jobs/*", "status", status=429, times=2, retry_after_ms=10)
    with pytest.raises(openai.RateLimitError):
        client.fine_tuning.jobs.retrieve(stored["id"])
    assert openai_stub.job(stored["id"]).status == "validating_files"  # a faulted retrieve does not advance
    with openai.OpenAI(api_key=openai_stub.api_key, base_url=openai_stub.base_url, max_retries=2) as retrying:
        assert retrying.fine_tuning.jobs.retrieve(stored["id"]).status == "queued"

    openai_stub.inject("POST", "/v1/chat/completions", "reset")
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "5"}])
    openai_stub.inject("POST", "/v1/chat/completions", "status", status=503)
    with openai.OpenAI(api_key=openai_stub.api_key, base_url=openai_stub.base_url, max_retries=1) as retrying:
        reply = retrying.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "5"}])
    assert reply.choices[0].message.content == "Price is $7.50"
    assert [r.fault for r in openai_stub.requests if r.path == "/v1/chat/completions"] == ["reset", "status", None]

    openai_stub.inject("POST", "/v1/fine_tuning/jobs", "store_then_drop")
    with pytest.raises(openai.APIConnectionError):
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train)
    assert len(openai_stub.jobs) == 2  # the job exists although the client never heard of it


# ---------------------------------------------------------------------------------------- whole path


def test_dataset_to_fine_tuned_model_to_evaluation(openai_stub: StubOpenAI, client: openai.OpenAI) -> None:
    openai_stub.processing_polls = 1
    train, valid = upload_pair(client)
    for file_id in (train, valid):
        assert client.files.wait_for_processing(file_id, poll_interval=0.01).status == "processed"
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train,
                                         validation_file=valid, suffix="pricer")
    assert run_to_end(client, job.id)[-1] == "succeeded"
    model = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    assert model is not None

    truth = {}
    for line in VALID.splitlines():
        messages = json.loads(line)["messages"]
        truth[messages[1]["content"]] = float(messages[2]["content"].removeprefix("Price is $"))
    openai_stub.chat_reply = lambda msgs, m: f"Price is ${truth[msgs[-1]['content']] + 1:.2f}"  # off by one dollar
    errors = []
    for prompt, price in truth.items():
        chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], seed=42)
        errors.append(abs(float((chat.choices[0].message.content or "").removeprefix("Price is $")) - price))
    assert errors == [1.0] * len(truth)
    assert openai_stub.count("POST", "/v1/chat/completions") == len(truth)


def test_max_in_flight_counts_the_requests_held_at_once(openai_stub, client):
    """The stub's measure of a concurrency limit: requests received and not yet answered, at the worst moment."""
    import threading

    openai_stub.inject("POST", "/v1/chat/completions", "delay", times=None, seconds=0.3)

    def ask() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hat"}])

    ask()
    ask()
    assert openai_stub.max_in_flight() == 1
    openai_stub.reset_records()
    openai_stub.clear_faults()  # each request is held until all three are in (at most 10 s): they surely overlap
    openai_stub.inject("POST", "/v1/chat/completions", "delay", times=3, together=3, seconds=10)
    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert openai_stub.max_in_flight() == 3 and openai_stub.max_in_flight("GET", "/v1/files") == 0
