"""Writing the Variables one run leaves for the next: a busy SQLite server costs a moment, not seconds."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

from ftprep import variables


def _database() -> Path:
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    assert url.startswith("sqlite+aiosqlite:///"), url
    return Path(url.removeprefix("sqlite+aiosqlite:///"))


def test_a_busy_sqlite_server_is_asked_again_sooner_than_prefect_would(prefect_server, monkeypatch):
    # Another connection writes the server's database (as Prefect's own event persister does) for 150 ms of
    # every 500: an update whose read comes before such a commit and whose write after it gets a 503, which
    # Prefect's client would wait 2 s (1.6 s at the least, with its jitter) to send again. The writes go on until
    # one meets a 503; the other connection then stops, so the write that met it must end well before 1.6 s
    # (under a loaded machine a write can take 0.7 s; with the writer going on, every attempt of one write could
    # meet a commit and the write fail after its 62 s of retries).
    met: list[int] = []
    hook = variables.ask_again_soon
    stop = threading.Event()

    def counting(response):
        if response.status_code == 503:
            met.append(503)
            stop.set()
        hook(response)

    monkeypatch.setattr(variables, "ask_again_soon", counting)

    def writer():
        db = sqlite3.connect(_database(), isolation_level=None, timeout=30)
        db.execute("CREATE TABLE IF NOT EXISTS ftprep_test_lock (x)")
        while not stop.is_set():
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO ftprep_test_lock VALUES (1)")
            time.sleep(0.15)
            db.execute("COMMIT")
            stop.wait(0.35)  # gone at once after its commit once a write met it: no more commits meet its retries
        db.close()

    name = f"ftprep_test_busy_{uuid.uuid4().hex[:8]}"
    variables.write(name, {"round": -1})  # the server's and the client's first-request costs, untimed
    thread = threading.Thread(target=writer)
    thread.start()
    took = []
    try:
        for i in range(200):
            started = time.perf_counter()
            variables.write(name, {"round": i})
            took.append(time.perf_counter() - started)
            if met:
                break
    finally:
        stop.set()
        thread.join()
        # its table goes only now: dropping it is a commit too, and one while a write was asked again could meet it
        db = sqlite3.connect(_database(), isolation_level=None, timeout=30)
        db.execute("DROP TABLE IF EXISTS ftprep_test_lock")
        db.close()
    from prefect.variables import Variable

    assert Variable.get(name) == {"round": len(took) - 1}
    assert met, "no write met a busy server: the writer's timing did not reproduce it"
    assert max(took) < 1.5, [round(t, 2) for t in took]


def test_the_waits_grow_as_a_busy_server_stays_busy():
    import httpx

    request = httpx.Request("PATCH", "http://127.0.0.1/api/variables/name/x")
    waits = []
    for _ in range(5):
        response = httpx.Response(503, request=request)
        variables.ask_again_soon(response)
        waits.append(float(response.headers["Retry-After"]))
    assert waits == [0.05, 0.25, 2, 16, 44]  # as patient in all as Prefect's own 2, 4, 8, 16 and 32 s
    # answers Prefect asks again after for as long as they come (Prefect Cloud's maintenance): 44 s each, never
    # growing without bound
    later = []
    for _ in range(600):
        response = httpx.Response(503, request=request, headers={"Prefect-Maintenance": "true"})
        variables.ask_again_soon(response)
        later.append(float(response.headers["Retry-After"]))
    assert set(later) == {44}
    told = httpx.Response(503, request=request, headers={"Retry-After": "7"})
    variables.ask_again_soon(told)
    assert told.headers["Retry-After"] == "7"  # the server's own word stands
    fine = httpx.Response(200, request=request)
    variables.ask_again_soon(fine)
    assert "Retry-After" not in fine.headers


def test_a_write_in_a_flow_uses_the_flow_runs_client_and_leaves_its_other_requests_alone(prefect_server):
    import httpx
    from prefect import flow
    from prefect.client.orchestration import get_client

    name = f"ftprep_test_flow_{uuid.uuid4().hex[:8]}"
    sent: list[str] = []

    @flow
    def writes() -> None:
        with get_client(sync_client=True) as client:  # the flow run's own client
            client._client.event_hooks["response"].append(lambda r: sent.append(f"{r.request.method} {r.url.path}"))
            variables.write(name, {"round": 0})
            variables.write(name, {"round": 1})
            assert client._client.event_hooks["response"].count(variables._while_writing) == 1

    writes()
    from prefect.variables import Variable

    assert Variable.get(name) == {"round": 1}
    path = f"/api/variables/name/{name}"
    # both writes on the flow run's client (a client of their own would also probe /api/csrf-token each time)
    assert [s for s in sent if "variables" in s] == [f"GET {path}", "POST /api/variables/", f"GET {path}",
                                                     f"PATCH {path}"], sent
    # the hook left on that client: a 503 to any other request keeps Prefect's own wait
    other = httpx.Response(503, request=httpx.Request("POST", "http://127.0.0.1/api/flow_runs/"))
    variables._while_writing(other)
    assert "Retry-After" not in other.headers
