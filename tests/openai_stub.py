"""A local, OpenAI-compatible stub server for the Files, Uploads, fine-tuning jobs and chat completions APIs.

Standard library only.  Tests drive it with the real ``openai`` SDK over real HTTP::

    with StubOpenAI() as stub:
        client = openai.OpenAI(api_key="sk-test-stub-key", base_url=stub.base_url, max_retries=0)
        f = client.files.create(file=("train.jsonl", b"{}\\n"), purpose="fine-tune")

Implemented endpoints (request/response shapes follow the OpenAI API):

* ``POST /v1/files`` (multipart: ``file``, ``purpose``, optional ``expires_after[anchor|seconds]``)
* ``GET /v1/files`` (``purpose``, ``limit`` (default 10000), ``after``, ``order`` (default ``desc``))
* ``GET /v1/files/{id}``, ``DELETE /v1/files/{id}``, ``GET /v1/files/{id}/content``
* ``POST /v1/uploads``, ``POST /v1/uploads/{id}/parts`` (multipart ``data``),
  ``POST /v1/uploads/{id}/complete``, ``POST /v1/uploads/{id}/cancel``
* ``POST /v1/fine_tuning/jobs``, ``GET /v1/fine_tuning/jobs`` (``limit`` (default 20), ``after``,
  ``metadata[key]=value`` filters or ``metadata=null``), ``GET /v1/fine_tuning/jobs/{id}``,
  ``POST /v1/fine_tuning/jobs/{id}/cancel``, ``GET /v1/fine_tuning/jobs/{id}/events`` (``limit``, ``after``)
* ``POST /v1/chat/completions`` (no streaming)

File processing: with ``processing_polls=k > 0`` a new file starts in status ``"uploaded"``; every
``GET /v1/files/{id}`` of it counts one poll and the k-th retrieve (and everything after it) shows the
final status (``"processed"``, or ``"error"`` for files matched by :meth:`StubOpenAI.fail_processing_for`).
With ``processing_polls=0`` the final status is returned right away by the create call.

Fine-tuning jobs follow a script: a job is created in status ``job_script[0]`` and every
``GET /v1/fine_tuning/jobs/{id}`` moves it one step along the script (default
``validating_files -> queued -> running -> succeeded``) before answering; a script that ends in a non-terminal
status leaves the job there.  Each transition appends job events (newest first in the events list).  On
success the job gets ``fine_tuned_model`` (``ft:{base}:{organization}:{suffix}:{8 chars}``), ``trained_tokens``
(training file bytes // 4 * n_epochs) and a ``fine-tune-results`` file (``step_metrics.csv``); a script ending
in ``"failed"`` sets ``error`` (see :meth:`StubOpenAI.fail_jobs`).  Chat completions answer for the models in
``base_models`` (fnmatch patterns) and for the fine-tuned models of succeeded jobs, else 404 ``model_not_found``;
the reply text comes from the first ``chat_replies`` entry whose fnmatch pattern matches the model, else from
``chat_reply(messages, model)`` (default :meth:`StubOpenAI.price_reply`, whose factor differs by model through
``price_factors``).  A reply function may return None (a response with an empty ``choices`` list) or raise
:class:`ChatError` (that request is answered with an OpenAI error); ``chat_count(model)`` counts chat requests.

Fault injection: :meth:`StubOpenAI.inject` (see its docstring for the kinds and their keyword arguments).

Uploaded bytes (files and upload parts) are spooled to a temporary directory on disk that is removed by
:meth:`StubOpenAI.stop`; request bodies are read in chunks, so hundreds of MB can go through the stub.

Standalone: ``python -m tests.openai_stub --port 8123 [--api-key KEY]`` prints the base URL on the
first line of stdout and serves until interrupted (SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import email.message
import fnmatch
import hashlib
import itertools
import json
import math
import re
import secrets
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_BASE_MODELS",
    "DEFAULT_JOB_SCRIPT",
    "FAULT_KINDS",
    "JOB_STATUSES",
    "Fault",
    "HeaderDict",
    "RecordedRequest",
    "StoredFile",
    "StoredJob",
    "ChatError",
    "StubOpenAI",
    "mask_api_key",
]

DEFAULT_API_KEY = "sk-test-stub-key"
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
FAULT_KINDS = ("status", "reset", "store_then_drop", "delay", "malformed_json")
_FAULT_KWARGS: dict[str, set[str]] = {
    "status": {"status", "retry_after", "retry_after_ms", "message", "type", "code", "param", "headers", "store"},
    "reset": set(),
    "store_then_drop": set(),
    "delay": {"seconds", "when", "together"},
    "malformed_json": {"body", "status", "store"},
}
_CHUNK = 1024 * 1024
_MAX_JSON_BODY = 16 * 1024 * 1024
_MAX_FORM_FIELD = 1024 * 1024
_MAX_PART_HEADERS = 64 * 1024
_LIST_LIMIT_MAX = 10_000
_UPLOAD_MAX_BYTES = 8 * 1024**3
JOB_STATUSES = ("validating_files", "queued", "running", "succeeded", "failed", "cancelled")
_JOB_TERMINAL = ("succeeded", "failed", "cancelled")
DEFAULT_JOB_SCRIPT = ("validating_files", "queued", "running", "succeeded")
DEFAULT_BASE_MODELS = ("gpt-4o-mini*", "gpt-4o*", "gpt-4.1*", "gpt-3.5-turbo*", "babbage-002", "davinci-002")
_HYPER_AUTO: dict[str, Any] = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8, "beta": 0.1}
_JOBS_LIST_DEFAULT = 20
_METADATA_FILTER = re.compile(r"metadata\[(?P<key>.+)\]")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_TRUNCATED_JSON = b'{"id": "file-abc", "object": "file", "bytes": 12, "created_'
_STATUS_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: (
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: ("You are not allowed to perform this request.", "invalid_request_error", None),
    404: ("Not found.", "invalid_request_error", None),
    408: ("Request timed out.", "timeout", None),
    409: ("Conflict.", "invalid_request_error", None),
    429: ("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
}


def mask_api_key(key: str) -> str:
    """Mask a key like OpenAI does in its 401 message (``sk-tes******-key``); never returns the full key."""
    if len(key) >= 14:
        return key[:6] + "*" * (len(key) - 10) + key[-4:]
    return "*" * max(len(key), 3)


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


# --------------------------------------------------------------------------------------------------
# public record types


class HeaderDict(dict):
    """A ``dict`` of request headers with lower-cased keys and case-insensitive lookups."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        for key, value in items:
            key = key.lower()
            super().__setitem__(key, f"{super().__getitem__(key)}, {value}" if key in self else value)

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """One request as seen by the stub (recorded as soon as its headers were read)."""

    method: str
    path: str  # without the query string
    query: dict[str, str]  # last value wins for repeated parameters
    query_string: str
    headers: HeaderDict
    client_address: tuple[str, int]
    started_at: float
    body_size: int = 0  # bytes of request body actually read (0 for "reset")
    form: dict[str, str] = field(default_factory=dict)  # multipart: non-file fields
    filename: str | None = None  # multipart: filename of the uploaded file part
    json: Any = None  # parsed JSON request body, if any
    fault: str | None = None  # kind of the injected fault applied to this request
    status: int | None = None  # HTTP status of the response (None: no response was sent)
    file_id: str | None = None  # id of a file created by this request (even if the response was dropped)
    job_id: str | None = None  # id of a fine-tuning job created by this request (even if the response was dropped)
    error: str | None = None  # e.g. "client disconnected" or a traceback of a stub bug
    answered_at: float | None = None  # when the response was ready to send (None: no response was sent)


@dataclass
class StoredFile:
    """A live stored file.  ``f["status"]`` etc. give the fields of the FileObject JSON."""

    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    segments: list[Path]
    expires_at: int | None = None
    polls_needed: int = 0
    polls_done: int = 0
    final_status: str = "processed"
    final_details: str | None = None
    seq: int = 0

    @property
    def status(self) -> str:
        return self.final_status if self.polls_done >= self.polls_needed else "uploaded"

    @property
    def status_details(self) -> str | None:
        return self.final_details if self.polls_done >= self.polls_needed else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": self.status,
            "status_details": self.status_details,
            "expires_at": self.expires_at,
        }

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def iter_bytes(self) -> Iterator[bytes]:
        for seg in self.segments:
            with open(seg, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk

    def read_bytes(self) -> bytes:
        return b"".join(self.iter_bytes())


@dataclass
class Fault:
    """An injected fault; returned by :meth:`StubOpenAI.inject`.  ``hits`` counts applications."""

    method: str
    path_pattern: str
    kind: str
    times: int | None
    kwargs: dict[str, Any]
    hits: int = 0

    @property
    def remaining(self) -> int | None:
        return None if self.times is None else max(self.times - self.hits, 0)

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", method.upper()):
            return False
        return path == self.path_pattern or fnmatch.fnmatchcase(path, self.path_pattern)


@dataclass
class _Upload:
    id: str
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    created_at: int
    expires_at: int
    status: str = "pending"
    parts: dict[str, tuple[Path, int]] = field(default_factory=dict)
    file: StoredFile | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "upload",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": self.status,
            "file": self.file.as_dict() if self.file is not None else None,
        }


@dataclass
class StoredJob:
    """A fine-tuning job.  ``job["status"]`` etc. give the fields of the FineTuningJob JSON; ``events`` are the
    job's events oldest first (as event JSON dicts); ``script`` the statuses it goes through (see
    :attr:`StubOpenAI.job_script`), ``step`` its position in it."""

    id: str
    model: str
    training_file: str
    validation_file: str | None
    seed: int
    suffix: str | None
    created_at: int
    method: dict[str, Any]  # as sent (or {"type": "supervised"}), hyperparameters filled in
    hyperparameters: dict[str, Any]  # of the method; "auto" until the job runs
    metadata: dict[str, str] | None
    integrations: list[Any] | None
    organization_id: str
    script: list[str]
    error_spec: dict[str, Any] | None  # the error a "failed" step sets
    training_bytes: int
    training_examples: int
    seq: int = 0
    step: int = 0
    status: str = "validating_files"
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    result_files: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    finished_at: int | None = None
    estimated_finish: int | None = None
    total_steps: int | None = None
    metrics_emitted: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        method_type = self.method.get("type", "supervised")
        method = copy.deepcopy(self.method)
        method[method_type] = {**(method.get(method_type) or {}), "hyperparameters": dict(self.hyperparameters)}
        return {
            "id": self.id,
            "object": "fine_tuning.job",
            "created_at": self.created_at,
            "error": dict(self.error) if self.error is not None else None,
            "fine_tuned_model": self.fine_tuned_model,
            "finished_at": self.finished_at,
            "hyperparameters": {k: self.hyperparameters[k] for k in ("batch_size", "learning_rate_multiplier",
                                                                      "n_epochs") if k in self.hyperparameters},
            "model": self.model,
            "organization_id": self.organization_id,
            "result_files": list(self.result_files),
            "seed": self.seed,
            "status": self.status,
            "trained_tokens": self.trained_tokens,
            "training_file": self.training_file,
            "validation_file": self.validation_file,
            "estimated_finish": self.estimated_finish,
            "integrations": copy.deepcopy(self.integrations),
            "metadata": dict(self.metadata) if self.metadata is not None else None,
            "method": method,
            "user_provided_suffix": self.suffix,
        }

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]


# --------------------------------------------------------------------------------------------------
# HTTP plumbing


class _ClientGone(Exception):
    """The client closed the connection before the request body was complete."""


class _ApiError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


class ChatError(_ApiError):
    """Raise from a chat reply function to answer that one request with an OpenAI error, e.g.
    ``ChatError(400, "Invalid prompt", code="invalid_prompt")``."""


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: StoredFile | None = None  # stream this file's bytes as the body


_DROP = object()  # close the connection (FIN) without a response
_RESET = object()  # abort the connection (RST) without a response


def _json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(obj).encode(), headers=dict(headers or {}))


def _error_response(status: int, message: str, *, type: str = "invalid_request_error",
                    param: str | None = None, code: str | None = None,
                    headers: dict[str, str] | None = None) -> _Response:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return _json_response(status, body, headers)


class _BodyReader:
    """Reads a request body in chunks, honouring Content-Length or chunked transfer encoding."""

    def __init__(self, rfile: Any, headers: Any, rec: RecordedRequest | None = None) -> None:
        self._rfile = rfile
        self._rec = rec
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self.total = 0
        self._chunk_left = 0
        self._remaining = 0
        if not self.chunked:
            raw = headers.get("Content-Length")
            try:
                self._remaining = int(raw) if raw else 0
            except ValueError:
                raise _ApiError(400, "Invalid Content-Length header.") from None
            if self._remaining < 0:
                raise _ApiError(400, "Invalid Content-Length header.")
        self.done = not self.chunked and self._remaining == 0

    def read(self, n: int = _CHUNK) -> bytes:
        if self.done:
            return b""
        if self.chunked:
            return self._read_chunked(n)
        data = self._rfile.read(min(n, self._remaining))
        if not data:
            raise _ClientGone("client disconnected before the request body was complete")
        self._remaining -= len(data)
        self._count(len(data))
        self.done = self._remaining == 0
        return data

    def _read_chunked(self, n: int) -> bytes:
        if self._chunk_left == 0:
            line = self._rfile.readline(65537)
            if not line:
                raise _ClientGone("client disconnected in a chunked body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _ApiError(400, "Malformed chunked request body.") from None
            if size == 0:
                while (trailer := self._rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                    del trailer
                self.done = True
                return b""
            self._chunk_left = size
        data = self._rfile.read(min(n, self._chunk_left))
        if not data:
            raise _ClientGone("client disconnected in a chunked body")
        self._chunk_left -= len(data)
        self._count(len(data))
        if self._chunk_left == 0:
            self._rfile.readline(3)  # CRLF after the chunk data
        return data

    def _count(self, n: int) -> None:
        self.total += n
        if self._rec is not None:
            self._rec.body_size = self.total

    def read_all(self, limit: int) -> bytes:
        out = bytearray()
        while chunk := self.read():
            out += chunk
            if len(out) > limit:
                self.drain()
                raise _ApiError(413, "Request body too large.")
        return bytes(out)

    def drain(self) -> None:
        while self.read():
            pass


@dataclass
class _FilePart:
    name: str
    filename: str | None
    content_type: str | None
    path: Path
    size: int


def _header_params(name: str, value: str) -> email.message.Message:
    msg = email.message.Message()
    msg[name] = value
    return msg


def _parse_multipart(reader: _BodyReader, content_type: str, new_blob: Any,
                     file_fields: tuple[str, ...] = ("file", "data")) -> tuple[dict[str, str], list[_FilePart]]:
    """Stream-parse a multipart/form-data body: file parts go to disk (``new_blob()`` paths), the other
    fields are returned as strings.  Raises _ApiError(400) for malformed bodies and _ClientGone on EOF."""
    boundary = _header_params("content-type", content_type).get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise _ApiError(400, "Invalid multipart/form-data body: missing boundary.")
    delim = b"--" + boundary.encode("latin-1")
    part_end = b"\r\n" + delim
    buf = bytearray()
    fields: dict[str, str] = {}
    files: list[_FilePart] = []
    sink_path: Path | None = None

    def fill() -> None:
        data = reader.read()
        if not data:
            raise _ApiError(400, "Invalid multipart/form-data body: unexpected end of body.")
        buf.extend(data)

    try:
        while (i := buf.find(delim)) < 0:  # skip the preamble
            if len(buf) > len(delim):
                del buf[: len(buf) - len(delim)]
            fill()
        del buf[: i + len(delim)]
        while True:
            while len(buf) < 2:
                fill()
            if buf[:2] == b"--":
                break
            while (j := buf.find(b"\r\n")) < 0:
                fill()
            del buf[: j + 2]
            if buf[:2] == b"\r\n":
                raw_headers = b""
                del buf[:2]
            else:
                while (k := buf.find(b"\r\n\r\n")) < 0:
                    if len(buf) > _MAX_PART_HEADERS:
                        raise _ApiError(400, "Invalid multipart/form-data body: part headers too large.")
                    fill()
                raw_headers = bytes(buf[:k])
                del buf[: k + 4]
            part_headers = HeaderDict(
                (line.split(":", 1)[0].strip(), line.split(":", 1)[1].strip())
                for line in raw_headers.decode("utf-8", "replace").split("\r\n")
                if ":" in line
            )
            disposition = _header_params("content-disposition", part_headers.get("content-disposition", ""))
            name = disposition.get_param("name", header="content-disposition")
            filename = disposition.get_filename()
            if not isinstance(name, str):
                raise _ApiError(400, "Invalid multipart/form-data body: part without a name.")
            is_file = filename is not None or name in file_fields
            sink_path = new_blob() if is_file else None
            field_value = bytearray()
            with open(sink_path, "wb") if sink_path is not None else contextlib.nullcontext() as fh:
                write = fh.write if fh is not None else field_value.extend
                size = 0
                while (i := buf.find(part_end)) < 0:
                    safe = len(buf) - (len(part_end) - 1)
                    if safe > 0:
                        write(buf[:safe])
                        size += safe
                        del buf[:safe]
                    if sink_path is None and size > _MAX_FORM_FIELD:
                        raise _ApiError(400, f"Form field {name!r} is too large.")
                    fill()
                write(buf[:i])
                size += i
                del buf[: i + len(part_end)]
            if sink_path is not None:
                files.append(_FilePart(name, filename, part_headers.get("content-type"), sink_path, size))
                sink_path = None
            else:
                fields[name] = field_value.decode("utf-8", "replace")
        reader.drain()  # epilogue
    except BaseException:
        for path in [fp.path for fp in files] + ([sink_path] if sink_path is not None else []):
            path.unlink(missing_ok=True)
        raise
    return fields, files


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # StubOpenAI.stop() joins the handler threads itself, with a deadline
    request_queue_size = 128
    stub: StubOpenAI

    def server_bind(self) -> None:
        # HTTPServer.server_bind() calls socket.getfqdn(), which can take seconds without DNS.
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, _ClientGone)) or self.stub._stopping.is_set():
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 300  # idle keep-alive connections; stop() closes them much earlier

    # ---- connection bookkeeping -------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        # Without this, Nagle + delayed ACKs add ~40 ms to every keep-alive request/response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.stub._track(self.connection, add=True)
        if self.server.stub._stopping.is_set():  # accepted while stop() was running
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.stub._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    # ---- request handling -------------------------------------------------------------------------
    def _dispatch(self) -> None:
        stub = self.server.stub
        split = urlsplit(self.path)
        path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        rec = RecordedRequest(
            method=self.command,
            path=path,
            query=query,
            query_string=split.query,
            headers=HeaderDict(self.headers.items()),
            client_address=tuple(self.client_address[:2]),  # type: ignore[arg-type]
            started_at=time.time(),
        )
        stub._record(rec)
        fault = stub._take_fault(self.command, path)
        if fault is not None:
            rec.fault = fault.kind
        try:
            reader = _BodyReader(self.rfile, self.headers, rec)
            result = self._run(fault, rec, reader, path, query)
            if result is _RESET:
                self._abort_connection()
                return
            if result is _DROP:
                self.close_connection = True
                return
            assert isinstance(result, _Response)
            if not reader.done:
                reader.drain()  # keep the connection usable for the next request
            self._send(result, rec)
        except _ApiError as err:  # malformed framing: answer and close, the stream position is unknown
            rec.error = err.message
            self.close_connection = True
            try:
                self._send(_error_response(err.status, err.message), rec)
            except OSError:
                pass
        except (_ClientGone, OSError) as err:
            rec.error = f"client disconnected: {err!r}"
            self.close_connection = True

    def _run(self, fault: Fault | None, rec: RecordedRequest, reader: _BodyReader, path: str,
             query: dict[str, str]) -> _Response | object:
        kind = fault.kind if fault is not None else None
        kw = fault.kwargs if fault is not None else {}
        if kind == "reset":
            return _RESET
        if kind == "delay" and kw.get("when", "before") == "before":
            if self._hold(fault, kw):
                return _DROP
        if kind in ("status", "malformed_json") and not kw.get("store", False):
            reader.drain()
            return self._fault_response(kind, kw)
        response = self._handle_normally(rec, reader, path, query)
        if kind == "store_then_drop":
            reader.drain()
            return _DROP
        if kind in ("status", "malformed_json"):
            reader.drain()
            return self._fault_response(kind, kw)
        if kind == "delay" and kw.get("when") == "after":  # stored already, only the response is late
            reader.drain()
            if self._hold(fault, kw):
                return _DROP
        return response

    def _hold(self, fault: Fault, kw: dict[str, Any]) -> bool:
        """A delay fault's wait; True if the stub is stopping meanwhile."""
        stopping, seconds = self.server.stub._stopping, float(kw.get("seconds", 1.0))
        together = kw.get("together")
        if together is None:
            return stopping.wait(seconds)
        deadline = time.monotonic() + seconds
        while fault.hits < together and time.monotonic() < deadline:
            if stopping.wait(0.01):
                return True
        return False

    @staticmethod
    def _fault_response(kind: str, kw: dict[str, Any]) -> _Response:
        if kind == "malformed_json":
            body = kw.get("body", _TRUNCATED_JSON)
            return _Response(int(kw.get("status", 200)), body.encode() if isinstance(body, str) else body)
        status = int(kw.get("status", 500))
        message, type_, code = _STATUS_DEFAULTS.get(
            status, ("Injected error.", "server_error" if status >= 500 else "invalid_request_error", None)
        )
        headers = {str(k): str(v) for k, v in (kw.get("headers") or {}).items()}
        if kw.get("retry_after") is not None:
            headers["Retry-After"] = str(kw["retry_after"])
        if kw.get("retry_after_ms") is not None:
            headers["retry-after-ms"] = str(kw["retry_after_ms"])
        return _error_response(
            status,
            kw.get("message", message),
            type=kw.get("type", type_),
            param=kw.get("param"),
            code=kw.get("code", code),
            headers=headers,
        )

    def _handle_normally(self, rec: RecordedRequest, reader: _BodyReader, path: str,
                         query: dict[str, str]) -> _Response:
        stub = self.server.stub
        auth_error = stub._check_auth(self.headers.get("Authorization"))
        if auth_error is not None:
            reader.drain()
            return auth_error
        norm = path.rstrip("/") or "/"
        for method, pattern, handler_name in _ROUTES:
            m = pattern.match(norm)
            if m and method == self.command:
                try:
                    return getattr(self, handler_name)(rec, reader, query, **m.groupdict())
                except _ApiError as err:
                    return _error_response(err.status, err.message, type=err.type, param=err.param,
                                           code=err.code)
                except (_ClientGone, OSError):
                    raise
                except Exception:  # a bug in the stub: report it to the client and on the record
                    rec.error = traceback.format_exc()
                    return _error_response(500, "Stub internal error: " + rec.error.splitlines()[-1],
                                           type="server_error")
        reader.drain()
        return _error_response(404, f"Invalid URL ({self.command} {path})")

    # ---- routes -----------------------------------------------------------------------------------
    def _read_json(self, rec: RecordedRequest, reader: _BodyReader) -> dict[str, Any]:
        raw = reader.read_all(_MAX_JSON_BODY)
        if not raw.strip():
            rec.json = {}
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise _ApiError(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
                "not valid JSON.)",
            ) from None
        rec.json = data
        if not isinstance(data, dict):
            raise _ApiError(400, f"Invalid type for request body: expected an object, got {type(data).__name__}.")
        return data

    def _read_form(self, rec: RecordedRequest, reader: _BodyReader) -> tuple[dict[str, str], list[_FilePart]]:
        content_type = self.headers.get("Content-Type") or ""
        if not content_type.lower().startswith("multipart/form-data"):
            reader.drain()
            raise _ApiError(400, "Invalid Content-Type header, expected multipart/form-data.")
        fields, files = _parse_multipart(reader, content_type, self.server.stub._new_blob)
        rec.form = dict(fields)
        rec.filename = next((fp.filename for fp in files if fp.filename is not None), None)
        return fields, files

    def files_create(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str]) -> _Response:
        fields, parts = self._read_form(rec, reader)
        stub = self.server.stub
        file_part = next((fp for fp in parts if fp.name == "file"), None)
        for fp in parts:
            if fp is not file_part:
                fp.path.unlink(missing_ok=True)
        try:
            if file_part is None:
                raise _ApiError(400, "Missing required parameter: 'file'.", param="file",
                                code="missing_required_parameter")
            purpose = _check_purpose(fields.get("purpose"))
            if file_part.size > stub.max_file_bytes:
                raise _ApiError(
                    400,
                    f"File is too large: {file_part.size} bytes (maximum {stub.max_file_bytes} bytes). "
                    "Use the Uploads API for larger files.",
                    param="file",
                )
            expires_at = _expires_at(fields, purpose)
        except BaseException:
            if file_part is not None:
                file_part.path.unlink(missing_ok=True)
            raise
        stored = stub._store_file(file_part.filename or "upload", purpose, [file_part.path], file_part.size,
                                  expires_at)
        rec.file_id = stored.id
        return _json_response(200, stored.as_dict())

    def files_list(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str]) -> _Response:
        reader.drain()
        try:
            limit = int(query.get("limit", _LIST_LIMIT_MAX))
        except ValueError:
            raise _ApiError(400, f"Invalid value for 'limit': {query.get('limit')!r}.", param="limit") from None
        if not 1 <= limit <= _LIST_LIMIT_MAX:
            raise _ApiError(400, f"Invalid 'limit': must be between 1 and {_LIST_LIMIT_MAX}.", param="limit")
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _ApiError(400, f"Invalid 'order': {order!r}, expected 'asc' or 'desc'.", param="order")
        data, has_more = self.server.stub._list_files(query.get("purpose"), query.get("after"), limit, order)
        return _json_response(200, {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        })

    def files_retrieve(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str],
                       file_id: str) -> _Response:
        reader.drain()
        return _json_response(200, self.server.stub._poll_file(file_id))

    def files_delete(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str],
                     file_id: str) -> _Response:
        reader.drain()
        self.server.stub._delete_file(file_id)
        return _json_response(200, {"id": file_id, "object": "file", "deleted": True})

    def files_content(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str],
                      file_id: str) -> _Response:
        reader.drain()
        stored = self.server.stub._get_file(file_id)
        return _Response(200, content_type="application/octet-stream", stream=stored)

    def uploads_create(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str]) -> _Response:
        body = self._read_json(rec, reader)
        for name in ("bytes", "filename", "mime_type", "purpose"):
            if name not in body:
                raise _ApiError(400, f"Missing required parameter: '{name}'.", param=name,
                                code="missing_required_parameter")
        purpose = _check_purpose(body["purpose"])
        size = body["bytes"]
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= _UPLOAD_MAX_BYTES:
            raise _ApiError(400, f"Invalid 'bytes': must be an integer between 0 and {_UPLOAD_MAX_BYTES}.",
                            param="bytes")
        if not isinstance(body["filename"], str) or not body["filename"]:
            raise _ApiError(400, "Invalid 'filename': expected a non-empty string.", param="filename")
        upload = self.server.stub._create_upload(body["filename"], purpose, size, str(body["mime_type"]))
        return _json_response(200, upload)

    def uploads_add_part(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str],
                         upload_id: str) -> _Response:
        _fields, parts = self._read_form(rec, reader)
        data = next((fp for fp in parts if fp.name == "data"), None)
        for fp in parts:
            if fp is not data:
                fp.path.unlink(missing_ok=True)
        if data is None:
            raise _ApiError(400, "Missing required parameter: 'data'.", param="data",
                            code="missing_required_parameter")
        try:
            part = self.server.stub._add_part(upload_id, data.path, data.size)
        except BaseException:
            data.path.unlink(missing_ok=True)
            raise
        return _json_response(200, part)

    def uploads_complete(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str],
                         upload_id: str) -> _Response:
        body = self._read_json(rec, reader)
        part_ids = body.get("part_ids")
        if not isinstance(part_ids, list) or not all(isinstance(p, str) for p in part_ids):
            raise _ApiError(400, "Invalid 'part_ids': expected an array of strings.", param="part_ids")
        md5 = body.get("md5")
        upload = self.server.stub._complete_upload(upload_id, part_ids, md5 if isinstance(md5, str) else None)
        rec.file_id = upload["file"]["id"]
        return _json_response(200, upload)

    def uploads_cancel(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str],
                       upload_id: str) -> _Response:
        reader.drain()
        return _json_response(200, self.server.stub._cancel_upload(upload_id))

    def jobs_create(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str]) -> _Response:
        body = self._read_json(rec, reader)
        job = self.server.stub._create_job(body)
        rec.job_id = job["id"]
        return _json_response(200, job)

    def jobs_list(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str]) -> _Response:
        reader.drain()
        limit = _parse_limit(query, _JOBS_LIST_DEFAULT)
        filters: dict[str, str] = {}
        null_metadata = False
        for key, value in query.items():
            if key == "metadata":
                if value != "null":
                    raise _ApiError(400, "Invalid 'metadata' filter: use metadata[key]=value or metadata=null.",
                                    param="metadata")
                null_metadata = True
            elif m := _METADATA_FILTER.fullmatch(key):
                filters[m["key"]] = value
        if null_metadata and filters:
            raise _ApiError(400, "Do not combine metadata=null with metadata[key]=value filters.", param="metadata")
        data, has_more = self.server.stub._list_jobs(query.get("after"), limit, filters, null_metadata)
        return _json_response(200, {"object": "list", "data": data, "has_more": has_more})

    def jobs_retrieve(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str],
                      job_id: str) -> _Response:
        reader.drain()
        return _json_response(200, self.server.stub._poll_job(job_id))

    def jobs_cancel(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str],
                    job_id: str) -> _Response:
        reader.drain()
        return _json_response(200, self.server.stub._cancel_job(job_id))

    def jobs_events(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str],
                    job_id: str) -> _Response:
        reader.drain()
        data, has_more = self.server.stub._list_job_events(job_id, query.get("after"),
                                                          _parse_limit(query, _JOBS_LIST_DEFAULT))
        return _json_response(200, {"object": "list", "data": data, "has_more": has_more})

    def chat_completions(self, rec: RecordedRequest, reader: _BodyReader, query: dict[str, str]) -> _Response:
        body = self._read_json(rec, reader)
        return _json_response(200, self.server.stub._chat_completion(body))

    # ---- response writing -------------------------------------------------------------------------
    def _send(self, resp: _Response, rec: RecordedRequest) -> None:
        length = resp.stream.bytes if resp.stream is not None else len(resp.body)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("x-request-id", "req_" + secrets.token_hex(16))
        self.send_header("openai-version", "2020-10-01")
        self.send_header("openai-processing-ms", "1")
        for key, value in resp.headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")  # what end_headers() does, but header + body in one write
        if resp.stream is None and self.command != "HEAD":
            self._headers_buffer.append(resp.body)
        rec.status = resp.status  # before writing: the client may look at the record as soon as it has read
        rec.answered_at = time.time()  # ... and may send its next request (max_in_flight counts this one done)
        self.flush_headers()
        if resp.stream is not None and self.command != "HEAD":
            for chunk in resp.stream.iter_bytes():
                self.wfile.write(chunk)

    def _abort_connection(self) -> None:
        """Close the socket with SO_LINGER 0 so the peer gets a TCP RST."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()  # the makefile() reader still holds the fd; closing it really closes the socket
        try:
            self.rfile.close()
        except OSError:
            pass


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/v1/files"), "files_create"),
    ("GET", re.compile(r"/v1/files"), "files_list"),
    ("GET", re.compile(r"/v1/files/(?P<file_id>[^/]+)"), "files_retrieve"),
    ("DELETE", re.compile(r"/v1/files/(?P<file_id>[^/]+)"), "files_delete"),
    ("GET", re.compile(r"/v1/files/(?P<file_id>[^/]+)/content"), "files_content"),
    ("POST", re.compile(r"/v1/uploads"), "uploads_create"),
    ("POST", re.compile(r"/v1/uploads/(?P<upload_id>[^/]+)/parts"), "uploads_add_part"),
    ("POST", re.compile(r"/v1/uploads/(?P<upload_id>[^/]+)/complete"), "uploads_complete"),
    ("POST", re.compile(r"/v1/uploads/(?P<upload_id>[^/]+)/cancel"), "uploads_cancel"),
    ("POST", re.compile(r"/v1/fine_tuning/jobs"), "jobs_create"),
    ("GET", re.compile(r"/v1/fine_tuning/jobs"), "jobs_list"),
    ("GET", re.compile(r"/v1/fine_tuning/jobs/(?P<job_id>[^/]+)"), "jobs_retrieve"),
    ("POST", re.compile(r"/v1/fine_tuning/jobs/(?P<job_id>[^/]+)/cancel"), "jobs_cancel"),
    ("GET", re.compile(r"/v1/fine_tuning/jobs/(?P<job_id>[^/]+)/events"), "jobs_events"),
    ("POST", re.compile(r"/v1/chat/completions"), "chat_completions"),
]
_ROUTES = [(m, re.compile(p.pattern + r"\Z"), h) for m, p, h in _ROUTES]


def _check_purpose(purpose: Any) -> str:
    if purpose is None or purpose == "":
        raise _ApiError(400, "Missing required parameter: 'purpose'.", param="purpose",
                        code="missing_required_parameter")
    if purpose not in FILE_PURPOSES:
        raise _ApiError(400, f"{purpose!r} is not one of {list(FILE_PURPOSES)!r} - 'purpose'", param="purpose")
    return str(purpose)


def _parse_limit(query: dict[str, str], default: int) -> int:
    try:
        limit = int(query.get("limit", default))
    except ValueError:
        raise _ApiError(400, f"Invalid value for 'limit': {query.get('limit')!r}.", param="limit") from None
    if not 1 <= limit <= _LIST_LIMIT_MAX:
        raise _ApiError(400, f"Invalid 'limit': must be between 1 and {_LIST_LIMIT_MAX}.", param="limit")
    return limit


def _message_text(message: Any) -> str:
    """The text of a chat message's ``content`` (a string or a list of ``{"type": "text", "text": ...}`` parts)."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _approx_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _hyperparameters(given: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise _ApiError(400, f"Invalid '{where}': expected an object.", param=where)
    out: dict[str, Any] = {}
    for key in keys:
        value = given.get(key, "auto")
        if value is None:
            value = "auto"
        if value != "auto":
            ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 1) if key in (
                "n_epochs", "batch_size") else (isinstance(value, int | float) and not isinstance(value, bool)
                                                and value > 0)
            if not ok:
                raise _ApiError(400, f"Invalid '{where}.{key}': {value!r}.", param=f"{where}.{key}")
        out[key] = value
    return out


def _expires_at(fields: dict[str, str], purpose: str) -> int | None:
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None if purpose != "batch" else int(time.time()) + 30 * 24 * 3600
    if anchor != "created_at":
        raise _ApiError(400, "Invalid 'expires_after[anchor]': expected 'created_at'.",
                        param="expires_after[anchor]")
    try:
        secs = int(seconds or "")
    except ValueError:
        raise _ApiError(400, "Invalid 'expires_after[seconds]': expected an integer.",
                        param="expires_after[seconds]") from None
    if not 3600 <= secs <= 2_592_000:
        raise _ApiError(400, "Invalid 'expires_after[seconds]': must be between 3600 and 2592000.",
                        param="expires_after[seconds]")
    return int(time.time()) + secs


# --------------------------------------------------------------------------------------------------
# the stub


class StubOpenAI:
    """An in-process OpenAI Files/Uploads API on 127.0.0.1 (see the module docstring).

    Public attributes: ``api_key`` (None disables auth), ``processing_polls`` (read at upload time),
    ``max_file_bytes`` (POST /v1/files limit, default 512 MiB), ``max_part_bytes`` (upload part limit,
    default 64 MiB), ``host``, ``port``, ``base_url`` (``http://127.0.0.1:PORT/v1``, set by :meth:`start`),
    ``storage_dir`` (temp dir with the stored bytes).

    Fine-tuning and chat attributes: ``job_script`` (statuses of new jobs, default :data:`DEFAULT_JOB_SCRIPT`),
    ``job_error`` (``{code, message, param}`` of jobs whose script reaches "failed"; None = a generic
    internal error), ``base_models`` (fnmatch patterns of the models known for chat and as fine-tuning bases),
    ``organization`` (name in fine-tuned model names), ``organization_id``, ``chat_reply`` (``callable(messages,
    model) -> str | None``, default :meth:`price_reply`), ``chat_replies`` (fnmatch pattern of a model -> reply
    function, before ``chat_reply``), ``price_factor`` (used by :meth:`price_reply`, default 1.5),
    ``price_factors`` (pattern -> factor, default ``{"ft:*": 1.1}``), ``job_results_base64`` (store the results
    CSV base64-encoded, as the real API does; default False).

    Helpers: ``requests`` (snapshot list of :class:`RecordedRequest`), ``count()``, ``reset_records()``,
    ``files_for()``, ``file_content()``, ``seed_file()``, ``fail_processing_for()``, ``inject()``,
    ``clear_faults()``, ``jobs``, ``job()``, ``advance_job()``, ``fail_jobs()``, ``fine_tuned_models``,
    ``price_reply()``, ``factor_for()``, ``chat_count()``, ``max_in_flight()`` (the most requests held at once).
    """

    def __init__(self, api_key: str | None = DEFAULT_API_KEY, processing_polls: int = 0, *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.base_url = ""
        self._lock = threading.RLock()
        self._defaults = (api_key, processing_polls)
        self._reset_state()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: Path | None = None

    def _reset_state(self) -> None:
        """Everything a test can change or create: settings back to the constructor's, no records or data."""
        self.api_key, self.processing_polls = self._defaults
        self.max_file_bytes = 512 * 1024 * 1024
        self.max_part_bytes = 64 * 1024 * 1024
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._fail_rules: list[tuple[str, str]] = []
        self._files: dict[str, StoredFile] = {}
        self._file_keys: dict[str, tuple[int, int]] = {}  # sort keys, kept after deletion for `after=`
        self._uploads: dict[str, _Upload] = {}
        self._jobs: dict[str, StoredJob] = {}
        self._ft_models: dict[str, str] = {}  # fine-tuned model name -> job id
        self._job_script: list[str] = list(DEFAULT_JOB_SCRIPT)
        self.job_error: dict[str, Any] | None = None
        self.base_models: list[str] = list(DEFAULT_BASE_MODELS)
        self.organization = "stub-org"
        self.organization_id = "org-stubopenai0000000000"
        self.chat_reply: Any = self.price_reply
        self.chat_replies: dict[str, Any] = {}  # fnmatch pattern of a model -> reply function, first match wins
        self.price_factor = 1.5
        self.price_factors: dict[str, float] = {"ft:*": 1.1}  # fnmatch pattern -> price_reply's factor
        self.job_results_base64 = False
        self._seq = itertools.count(1)

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> StubOpenAI:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._tmpdir = Path(tempfile.mkdtemp(prefix="openai-stub-"))
        server = _Server((self.host, self.port), _Handler)
        server.stub = self
        self._server = server
        self.port = server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}/v1"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=f"openai-stub-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, abort open (keep-alive) connections, join the threads, remove the temp dir."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        deadline = time.monotonic() + timeout
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
            threads = list(self._handler_threads)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0))
        for t in threads:
            t.join(max(deadline - time.monotonic(), 0))
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def reset(self, timeout: float = 5.0) -> None:
        """Make a running stub as good as a new one on the same port, for the next test.

        Open connections are aborted first and their handler threads joined, so a request still in flight
        from an earlier test (or a kept-alive client) cannot be recorded, store a file or consume a fault
        after the reset. Then every setting goes back to the constructor's value and all records, faults,
        files, uploads, jobs and stored bytes are dropped.
        """
        self._stopping.set()  # cuts injected delays short; connections accepted meanwhile are closed at once
        try:
            with self._lock:
                conns = list(self._conns)
                threads = list(self._handler_threads)
            for sock in conns:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            deadline = time.monotonic() + timeout
            for t in threads:
                t.join(max(deadline - time.monotonic(), 0))
            if any(t.is_alive() for t in threads):
                raise RuntimeError("openai stub: a request handler of the previous test did not finish")
            with self._lock:
                self._reset_state()
                if self._tmpdir is not None:
                    for blob in self._tmpdir.iterdir():
                        blob.unlink(missing_ok=True)
        finally:
            self._stopping.clear()

    @property
    def storage_dir(self) -> Path | None:
        """Temporary directory holding stored file/part bytes (removed by :meth:`stop`)."""
        return self._tmpdir

    def __enter__(self) -> StubOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_until_interrupted(self) -> None:
        """Block until SIGINT/SIGTERM (main thread only), then stop."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        try:
            while not done.wait(0.2):
                pass
        finally:
            self.stop()

    # ---- test helpers -----------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot (copy) of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset_records(self) -> None:
        with self._lock:
            self._requests.clear()

    def count(self, method: str | None = None, path_prefix: str = "", *, exact: bool = False,
              fault: str | None | bool = False) -> int:
        """Number of recorded requests with this method (None/"*" = any) whose path starts with
        ``path_prefix`` (or equals it with ``exact=True``).  Faulted attempts are counted too; pass
        ``fault=None`` for only un-faulted requests or ``fault="reset"`` etc. for one kind."""
        n = 0
        for r in self.requests:
            if method not in (None, "*") and r.method != method.upper():
                continue
            if (r.path != path_prefix) if exact else not r.path.startswith(path_prefix):
                continue
            if fault is not False and r.fault != fault:
                continue
            n += 1
        return n

    def files_for(self, purpose: str | None = None) -> list[StoredFile]:
        """Live (non-deleted) stored files, oldest first, optionally only those with ``purpose``."""
        with self._lock:
            files = sorted(self._files.values(), key=lambda f: (f.created_at, f.seq))
        return [f for f in files if purpose is None or f.purpose == purpose]

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            return self._files[file_id].read_bytes()

    def seed_file(self, filename: str, content: bytes, purpose: str = "fine-tune", *,
                  created_at: int | None = None) -> StoredFile:
        """Store a file directly (no HTTP), e.g. to pre-populate the account.  Processing rules apply."""
        path = self._new_blob()
        path.write_bytes(content)
        return self._store_file(filename, _check_purpose(purpose), [path], len(content), None,
                                created_at=created_at)

    def fail_processing_for(self, filename_substring: str, message: str = "File validation failed.") -> None:
        """Files uploaded from now on whose filename contains ``filename_substring`` end in status
        ``"error"`` with ``status_details=message`` (after ``processing_polls`` retrieves)."""
        with self._lock:
            self._fail_rules.append((filename_substring, message))

    def inject(self, method: str, path_pattern: str, kind: str, times: int | None = 1, **kw: Any) -> Fault:
        """Make the next ``times`` (None = every) matching requests fail.

        ``method``: HTTP method or "*"; ``path_pattern``: exact path or fnmatch pattern matched against the
        path without query (``*`` also matches ``/``, so ``/v1/files/*`` matches ``/v1/files/x/content``).
        Faults are consumed in injection order; the first matching fault with uses left applies.

        Kinds and keyword arguments:

        * ``"status"``: body is read and discarded, then an OpenAI error JSON is returned.
          ``status`` (default 500), ``retry_after`` (-> ``Retry-After``), ``retry_after_ms`` (->
          ``retry-after-ms``, which the SDK prefers), ``message``/``type``/``code``/``param`` (error
          fields; defaults depend on the status), ``headers`` (extra response headers, e.g.
          ``{"x-should-retry": "false"}``), ``store`` (default False; True = handle the request for real,
          e.g. store the file, and then answer with the error).
        * ``"reset"``: the connection is aborted (SO_LINGER 0 -> TCP RST) before the body is read.
        * ``"store_then_drop"``: the request is handled for real (the file IS stored), then the connection
          is closed without any response.
        * ``"delay"``: ``seconds`` (default 1.0); ``when="before"`` (default): sleep, then read the body and
          handle the request normally (the file is stored even if the client gave up meanwhile, provided
          the client had sent the whole body - true for bodies that fit in the socket buffers);
          ``when="after"``: handle/store first, then sleep before sending the response. ``together``: instead
          of sleeping ``seconds``, hold each request until that many have met this fault (at most ``seconds``), so
          that concurrent requests overlap however late the last one starts.
        * ``"malformed_json"``: answer ``status`` (default 200) with ``Content-Type: application/json`` and
          ``body`` (default: truncated JSON); ``store`` (default False) as for ``"status"``.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        unknown = set(kw) - _FAULT_KWARGS[kind]
        if unknown:
            raise TypeError(f"unexpected keyword arguments for fault {kind!r}: {sorted(unknown)}")
        if kind == "delay" and kw.get("when", "before") not in ("before", "after"):
            raise ValueError("delay fault: when must be 'before' or 'after'")
        fault = Fault(method.upper(), path_pattern, kind, times, dict(kw))
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ---- fine-tuning jobs and chat: test helpers -------------------------------------------------------
    @property
    def job_script(self) -> list[str]:
        """Statuses a new job goes through: created in ``job_script[0]``, one step further on every retrieve.
        Read when a job is created (existing jobs keep theirs).  A terminal status ("succeeded", "failed",
        "cancelled") may only come last; a script ending in another status leaves the job there."""
        return list(self._job_script)

    @job_script.setter
    def job_script(self, script: Iterable[str]) -> None:
        script = list(script)
        if not script:
            raise ValueError("job_script must not be empty")
        bad = [s for s in script if s not in JOB_STATUSES]
        if bad:
            raise ValueError(f"unknown job statuses {bad}; expected some of {JOB_STATUSES}")
        if any(s in _JOB_TERMINAL for s in script[:-1]):
            raise ValueError("a terminal status (succeeded/failed/cancelled) may only end the job_script")
        with self._lock:
            self._job_script = script

    def fail_jobs(self, message: str = "The job failed due to an internal error.", code: str = "internal_error",
                  param: str | None = None, *, after: str = "validating_files") -> None:
        """Jobs created from now on fail: ``job_script`` becomes the default script up to ``after``, then
        ``"failed"``, and the failed job's ``error`` is ``{code, message, param}``.  Restore with
        ``stub.job_script = DEFAULT_JOB_SCRIPT``."""
        if after not in DEFAULT_JOB_SCRIPT[:-1]:
            raise ValueError(f"after must be one of {DEFAULT_JOB_SCRIPT[:-1]}")
        with self._lock:
            self.job_error = {"code": code, "message": message, "param": param}
            self.job_script = [*DEFAULT_JOB_SCRIPT[: DEFAULT_JOB_SCRIPT.index(after) + 1], "failed"]

    @property
    def jobs(self) -> list[dict[str, Any]]:
        """The stored fine-tuning jobs as FineTuningJob JSON dicts, oldest first."""
        with self._lock:
            return [j.as_dict() for j in sorted(self._jobs.values(), key=lambda j: j.seq)]

    def job(self, job_id: str) -> StoredJob:
        """The live :class:`StoredJob` (KeyError if unknown)."""
        with self._lock:
            return self._jobs[job_id]

    def advance_job(self, job_id: str, steps: int = 1) -> dict[str, Any]:
        """Move a job ``steps`` steps along its script, as that many retrieves would (without a request)."""
        with self._lock:
            job = self._jobs[job_id]
            for _ in range(steps):
                self._advance_job(job)
            return job.as_dict()

    def continue_job(self, job_id: str, *statuses: str) -> None:
        """Append ``statuses`` to a job's script (say, "succeeded" to a job left "running"): the next retrieves
        move it on.  The job's current status must not be terminal."""
        bad = [s for s in statuses if s not in JOB_STATUSES]
        if bad or not statuses:
            raise ValueError(f"unknown job statuses {bad}; expected some of {JOB_STATUSES}")
        with self._lock:
            job = self._jobs[job_id]
            if job.status in _JOB_TERMINAL:
                raise ValueError(f"job {job_id} is already {job.status}")
            job.script = job.script[: job.step + 1] + list(statuses)

    @property
    def fine_tuned_models(self) -> list[str]:
        """Names of the models made by succeeded jobs, oldest first."""
        with self._lock:
            return list(self._ft_models)

    def chat_count(self, model: str | None = None) -> int:
        """Chat completion requests received (faulted and refused ones too), for ``model`` or for all."""
        return sum(1 for r in self.requests if r.method == "POST" and r.path == "/v1/chat/completions"
                   and (model is None or (isinstance(r.json, dict) and r.json.get("model") == model)))

    def max_in_flight(self, method: str = "POST", path: str = "/v1/chat/completions") -> int:
        """The most ``method path`` requests the stub held at once: received, not yet answered. A request that
        got no answer (reset, dropped) counts as in flight until the end."""
        events = []
        for r in self.requests:
            if r.method == method and r.path == path:
                events += [(r.started_at, 1), (r.answered_at if r.answered_at is not None else math.inf, -1)]
        peak = current = 0
        for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an answer before a request at the same time
            current += step
            peak = max(peak, current)
        return peak

    def factor_for(self, model: str) -> float:
        """``price_reply``'s factor for ``model``: the first matching ``price_factors`` pattern, else
        ``price_factor`` (by default fine-tuned models answer x1.1, the others x1.5)."""
        with self._lock:
            factors = list(self.price_factors.items())
        return next((f for pattern, f in factors if fnmatch.fnmatchcase(model, pattern)), self.price_factor)

    def price_reply(self, messages: list[dict[str, Any]], model: str) -> str:
        """The default ``chat_reply``: ``"Price is $X.XX"`` where X is the first number in the last user
        message times the model's factor (:meth:`factor_for`; commas in the number are ignored), or, for a
        message without a number, a price in [1, 1000) derived from a hash of the text."""
        text = next((_message_text(m) for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"),
                    "")
        match = _NUMBER.search(text)
        if match:
            price = float(match.group().replace(",", "")) * self.factor_for(model)
        else:
            price = 1 + int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 99_900 / 100
        return f"Price is ${price:.2f}"

    # ---- internals used by the handler ------------------------------------------------------------
    def _track(self, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(sock)
                self._handler_threads.add(threading.current_thread())
            else:
                self._conns.discard(sock)
                self._handler_threads.discard(threading.current_thread())

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(rec)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if (fault.times is None or fault.hits < fault.times) and fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _check_auth(self, header: str | None) -> _Response | None:
        if self.api_key is None:
            return None
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "basic" and token:  # the key as the password of URL userinfo, as OpenAI accepts
            try:
                scheme, token = "bearer", base64.b64decode(token).decode().partition(":")[2]
            except ValueError:
                token = ""
        if scheme.lower() != "bearer" or not token:
            return _error_response(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with "
                "blank username) if you're accessing the API from your browser and are prompted for a "
                "username. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            )
        if not secrets.compare_digest(token.encode(), self.api_key.encode()):
            return _error_response(
                401,
                f"Incorrect API key provided: {mask_api_key(token)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        return None

    def _new_blob(self) -> Path:
        assert self._tmpdir is not None, "stub not started"
        return self._tmpdir / f"blob-{secrets.token_hex(8)}"

    def _store_file(self, filename: str, purpose: str, segments: list[Path], size: int,
                    expires_at: int | None, *, created_at: int | None = None, processed: bool = False) -> StoredFile:
        """Store a file; ``processed=True`` (files the stub makes itself) skips processing polls and fail rules."""
        with self._lock:
            final_status, details = "processed", None
            for substring, message in [] if processed else self._fail_rules:
                if substring in filename:
                    final_status, details = "error", message
                    break
            stored = StoredFile(
                id=_new_id("file-"),
                filename=filename,
                purpose=purpose,
                bytes=size,
                created_at=int(time.time()) if created_at is None else created_at,
                segments=segments,
                expires_at=expires_at,
                polls_needed=0 if processed else max(int(self.processing_polls), 0),
                final_status=final_status,
                final_details=details,
                seq=next(self._seq),
            )
            self._files[stored.id] = stored
            self._file_keys[stored.id] = (stored.created_at, stored.seq)
            return stored

    def _get_file(self, file_id: str) -> StoredFile:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise _ApiError(404, f"No such File object: {file_id}", param="id")
        return stored

    def _poll_file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            stored = self._get_file(file_id)
            stored.polls_done += 1
            return stored.as_dict()

    def _delete_file(self, file_id: str) -> None:
        with self._lock:
            stored = self._get_file(file_id)
            del self._files[file_id]
        for seg in stored.segments:
            seg.unlink(missing_ok=True)

    def _list_files(self, purpose: str | None, after: str | None, limit: int,
                    order: str) -> tuple[list[dict[str, Any]], bool]:
        with self._lock:
            files = [f for f in self._files.values() if purpose is None or f.purpose == purpose]
            files.sort(key=lambda f: (f.created_at, f.seq), reverse=order == "desc")
            if after:
                key = self._file_keys.get(after)
                if key is None:
                    raise _ApiError(400, f"Invalid 'after': no such File object: {after}", param="after")
                if order == "desc":
                    files = [f for f in files if (f.created_at, f.seq) < key]
                else:
                    files = [f for f in files if (f.created_at, f.seq) > key]
            return [f.as_dict() for f in files[:limit]], len(files) > limit

    def _get_upload(self, upload_id: str) -> _Upload:
        upload = self._uploads.get(upload_id)
        if upload is None:
            raise _ApiError(404, f"No such Upload object: {upload_id}", param="upload_id")
        return upload

    def _create_upload(self, filename: str, purpose: str, size: int, mime_type: str) -> dict[str, Any]:
        now = int(time.time())
        upload = _Upload(_new_id("upload_"), filename, purpose, size, mime_type, now, now + 3600)
        with self._lock:
            self._uploads[upload.id] = upload
            return upload.as_dict()

    def _add_part(self, upload_id: str, path: Path, size: int) -> dict[str, Any]:
        with self._lock:
            upload = self._get_upload(upload_id)
            if upload.status != "pending":
                raise _ApiError(400, f"Cannot add parts to an Upload with status {upload.status!r}.")
            if size > self.max_part_bytes:
                raise _ApiError(400, f"Part is too large: {size} bytes (maximum {self.max_part_bytes} bytes).",
                                param="data")
            part_id = _new_id("part_")
            upload.parts[part_id] = (path, size)
        return {"id": part_id, "object": "upload.part", "created_at": int(time.time()), "upload_id": upload_id}

    def _complete_upload(self, upload_id: str, part_ids: list[str], md5: str | None) -> dict[str, Any]:
        with self._lock:
            upload = self._get_upload(upload_id)
            if upload.status != "pending":
                raise _ApiError(400, f"Cannot complete an Upload with status {upload.status!r}.")
            if len(set(part_ids)) != len(part_ids):
                raise _ApiError(400, "Duplicate part ids in 'part_ids'.", param="part_ids")
            unknown = [p for p in part_ids if p not in upload.parts]
            if unknown:
                raise _ApiError(400, f"Invalid part ids for Upload {upload_id}: {unknown}", param="part_ids")
            segments = [upload.parts[p][0] for p in part_ids]
            total = sum(upload.parts[p][1] for p in part_ids)
            if total != upload.bytes:
                raise _ApiError(
                    400,
                    f"The number of bytes uploaded ({total}) does not match the number of bytes specified "
                    f"when creating the Upload ({upload.bytes}).",
                )
            upload.status = "completing"  # parts can't be added while we hash outside the lock
        if md5:
            digest = hashlib.md5()
            for seg in segments:
                with open(seg, "rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
            if digest.hexdigest() != md5.lower():
                with self._lock:
                    upload.status = "pending"
                raise _ApiError(400, "The md5 checksum of the uploaded parts does not match 'md5'.", param="md5")
        with self._lock:
            for pid, (path, _size) in upload.parts.items():  # unused parts are discarded
                if pid not in part_ids:
                    path.unlink(missing_ok=True)
            upload.file = self._store_file(upload.filename, upload.purpose, segments, total, None)
            upload.status = "completed"
            return upload.as_dict()

    def _cancel_upload(self, upload_id: str) -> dict[str, Any]:
        with self._lock:
            upload = self._get_upload(upload_id)
            if upload.status != "pending":
                raise _ApiError(400, f"Cannot cancel an Upload with status {upload.status!r}.")
            upload.status = "cancelled"
            for path, _size in upload.parts.values():
                path.unlink(missing_ok=True)
            upload.parts.clear()
            return upload.as_dict()

    # ---- fine-tuning jobs -----------------------------------------------------------------------------
    def _model_known(self, model: str) -> bool:
        with self._lock:
            if model in self._ft_models:
                return True
            return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.base_models)

    def _job_file(self, file_id: Any, param: str) -> StoredFile:
        if not isinstance(file_id, str) or not file_id:
            raise _ApiError(400, f"Invalid '{param}': expected a file id.", param=param)
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise _ApiError(400, f"invalid {param}: {file_id}", param=param)
        if stored.purpose != "fine-tune":
            raise _ApiError(400, f"invalid {param}: {file_id} has purpose {stored.purpose!r}, expected "
                            "'fine-tune'.", param=param)
        if stored.status == "uploaded":
            raise _ApiError(400, f"File {file_id} is not ready", param=param, code="file_not_ready")
        if stored.status != "processed":
            raise _ApiError(400, f"invalid {param}: {file_id} failed processing: {stored.status_details}",
                            param=param)
        return stored

    def _create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        for name in ("model", "training_file"):
            if not body.get(name):
                raise _ApiError(400, f"Missing required parameter: '{name}'.", param=name,
                                code="missing_required_parameter")
        model = body["model"]
        if not isinstance(model, str) or not self._model_known(model):
            raise _ApiError(400, f"Model {model} is not available for fine-tuning or does not exist.",
                            param="model", code="model_not_available")
        training = self._job_file(body["training_file"], "training_file")
        validation_id = body.get("validation_file")
        if validation_id is not None:
            self._job_file(validation_id, "validation_file")
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or len(suffix) > 64):
            raise _ApiError(400, "Invalid 'suffix': expected a string of at most 64 characters.", param="suffix")
        seed = body.get("seed")
        if seed is None:
            seed = secrets.randbelow(2**31)
        elif not isinstance(seed, int) or isinstance(seed, bool):
            raise _ApiError(400, f"Invalid 'seed': {seed!r}, expected an integer.", param="seed")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16 or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
            raise _ApiError(400, "Invalid 'metadata': expected at most 16 string keys with string values.",
                            param="metadata")
        method = body.get("method")
        if method is None:
            method = {"type": "supervised"}
        if not isinstance(method, dict) or method.get("type") not in ("supervised", "dpo", "reinforcement"):
            raise _ApiError(400, "Invalid 'method': expected an object with 'type' supervised, dpo or reinforcement.",
                            param="method")
        mtype = method["type"]
        keys = ("batch_size", "learning_rate_multiplier", "n_epochs") + (("beta",) if mtype == "dpo" else ())
        legacy = _hyperparameters(body.get("hyperparameters"), "hyperparameters", keys)
        section = method.get(mtype) or {}
        given = section.get("hyperparameters") if isinstance(section, dict) else None
        hyper = _hyperparameters(given, f"method.{mtype}.hyperparameters", keys)
        hyper = {k: hyper[k] if hyper[k] != "auto" else legacy[k] for k in keys}
        lines, ends_with_newline = 0, True
        try:
            for chunk in training.iter_bytes():
                lines += chunk.count(b"\n")
                ends_with_newline = chunk.endswith(b"\n")
        except OSError:  # deleted meanwhile: the job still refers to it, as on the real API
            pass
        integrations = body.get("integrations")
        with self._lock:
            job = StoredJob(
                id=_new_id("ftjob-"),
                model=model,
                training_file=training.id,
                validation_file=validation_id,
                seed=seed,
                suffix=suffix,
                created_at=int(time.time()),
                method=copy.deepcopy(method),
                hyperparameters=hyper,
                metadata=dict(metadata) if metadata is not None else None,
                integrations=copy.deepcopy(integrations) if isinstance(integrations, list) else None,
                organization_id=self.organization_id,
                script=list(self._job_script),
                error_spec=dict(self.job_error) if self.job_error is not None else None,
                training_bytes=training.bytes,
                training_examples=lines + (0 if ends_with_newline else 1),
                seq=next(self._seq),
            )
            self._jobs[job.id] = job
            self._job_event(job, f"Created fine-tuning job: {job.id}")
            job.status = ""
            self._enter_status(job, job.script[0])
            return job.as_dict()

    def _get_job(self, job_id: str) -> StoredJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise _ApiError(404, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
        return job

    def _poll_job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._get_job(job_id)
            self._advance_job(job)
            return job.as_dict()

    def _cancel_job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._get_job(job_id)
            if job.status in _JOB_TERMINAL:
                raise _ApiError(400, f"Cannot cancel a job with status {job.status!r}: {job_id}",
                                param="fine_tuning_job_id")
            self._enter_status(job, "cancelled")
            return job.as_dict()

    def _list_jobs(self, after: str | None, limit: int, filters: dict[str, str],
                   null_metadata: bool) -> tuple[list[dict[str, Any]], bool]:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.seq, reverse=True)
            if after:
                cursor = self._jobs.get(after)
                if cursor is None:
                    raise _ApiError(400, f"Invalid 'after': no such fine-tuning job: {after}", param="after")
                jobs = [j for j in jobs if j.seq < cursor.seq]
            if null_metadata:
                jobs = [j for j in jobs if not j.metadata]
            for key, value in filters.items():
                jobs = [j for j in jobs if j.metadata is not None and j.metadata.get(key) == value]
            return [j.as_dict() for j in jobs[:limit]], len(jobs) > limit

    def _list_job_events(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        with self._lock:
            job = self._get_job(job_id)
            events = job.events[::-1]  # newest first
            if after:
                ids = [e["id"] for e in events]
                if after not in ids:
                    raise _ApiError(400, f"Invalid 'after': no such event of {job_id}: {after}", param="after")
                events = events[ids.index(after) + 1:]
            return [dict(e) for e in events[:limit]], len(events) > limit

    def _job_event(self, job: StoredJob, message: str, *, level: str = "info", type: str = "message",
                   data: dict[str, Any] | None = None) -> None:
        job.events.append({
            "id": _new_id("ftevent-"),
            "object": "fine_tuning.job.event",
            "created_at": int(time.time()),
            "level": level,
            "message": message,
            "data": data if data is not None else {},
            "type": type,
        })

    def _advance_job(self, job: StoredJob) -> None:
        if job.status in _JOB_TERMINAL or job.step + 1 >= len(job.script):
            return
        job.step += 1
        self._enter_status(job, job.script[job.step])

    def _resolve_hyperparameters(self, job: StoredJob) -> None:
        if job.total_steps is not None:
            return
        job.hyperparameters = {k: _HYPER_AUTO[k] if v == "auto" else v for k, v in job.hyperparameters.items()}
        batches = math.ceil(max(job.training_examples, 1) / job.hyperparameters["batch_size"])
        job.total_steps = job.hyperparameters["n_epochs"] * batches

    def _metric_steps(self, job: StoredJob) -> list[int]:
        total = job.total_steps or 1
        return sorted({1, *(max(1, round(total * k / 4)) for k in range(1, 5))})

    def _metrics(self, job: StoredJob, step: int) -> dict[str, Any]:
        total = job.total_steps or 1
        loss = round(0.35 + 1.4 * (1 - step / total) ** 2, 4)
        data: dict[str, Any] = {"step": step, "train_loss": loss,
                                "train_mean_token_accuracy": round(0.55 + 0.4 * step / total, 4),
                                "total_steps": total}
        if job.validation_file is not None:
            data["valid_loss"] = round(loss * 1.08 + 0.02, 4)
            data["valid_mean_token_accuracy"] = round(0.5 + 0.4 * step / total, 4)
        return data

    def _emit_metrics(self, job: StoredJob, upto: int) -> None:
        points = self._metric_steps(job)
        for step in points[job.metrics_emitted:upto]:
            data = self._metrics(job, step)
            message = f"Step {step}/{job.total_steps}: training loss={data['train_loss']:.2f}"
            if "valid_loss" in data:
                message += f", validation loss={data['valid_loss']:.2f}"
            self._job_event(job, message, type="metrics", data=data)
        job.metrics_emitted = max(job.metrics_emitted, min(upto, len(points)))

    def _results_csv(self, job: StoredJob) -> bytes:
        total = job.total_steps or 1
        lines = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"]
        stride = max(1, total // 1000)
        for step in sorted({*range(1, total + 1, stride), total}):
            m = self._metrics(job, step)
            lines.append(f"{step},{m['train_loss']},{m['train_mean_token_accuracy']},{m.get('valid_loss', '')},"
                         f"{m.get('valid_mean_token_accuracy', '')}")
        return ("\n".join(lines) + "\n").encode()

    def _enter_status(self, job: StoredJob, status: str) -> None:
        previous, job.status = job.status, status
        now = int(time.time())
        if status == "validating_files" and previous != status:
            message = f"Validating training file: {job.training_file}"
            if job.validation_file is not None:
                message += f" and validation file: {job.validation_file}"
            self._job_event(job, message)
        elif status == "queued" and previous != status:
            self._job_event(job, "Files validated, moving job to queued state")
        elif status == "running":
            if previous != status:
                self._resolve_hyperparameters(job)
                job.estimated_finish = now + 60
                self._job_event(job, "Fine-tuning job started")
            runs = job.script.count("running")
            nth = job.script[: job.step + 1].count("running")  # 1-based: this is the nth "running" step
            self._emit_metrics(job, len(self._metric_steps(job)) * nth // max(runs, 1))
        elif status == "succeeded":
            self._resolve_hyperparameters(job)
            self._emit_metrics(job, len(self._metric_steps(job)))
            base = job.model.split(":")[1] if job.model.startswith("ft:") else job.model
            short = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
                            for _ in range(8))
            job.fine_tuned_model = f"ft:{base}:{self.organization}:{job.suffix or ''}:{short}"
            job.trained_tokens = job.training_bytes // 4 * job.hyperparameters["n_epochs"]
            path = self._new_blob()
            content = self._results_csv(job)
            if self.job_results_base64:
                content = base64.b64encode(content)
            path.write_bytes(content)
            results = self._store_file("step_metrics.csv", "fine-tune-results", [path], len(content), None,
                                       processed=True)
            job.result_files = [results.id]
            job.finished_at, job.estimated_finish = now, None
            self._ft_models[job.fine_tuned_model] = job.id
            self._job_event(job, f"Checkpoint created at step {job.total_steps}")
            self._job_event(job, "New fine-tuned model created", data={"fine_tuned_model": job.fine_tuned_model})
            self._job_event(job, "The job has successfully completed")
        elif status == "failed":
            job.error = dict(job.error_spec or {"code": "internal_error", "param": None,
                                                "message": "The job failed due to an internal error."})
            job.finished_at, job.estimated_finish = now, None
            reason = {"invalid_training_file": "an invalid training file",
                      "invalid_validation_file": "an invalid validation file"}.get(job.error["code"], "an error")
            self._job_event(job, f"The job failed due to {reason}. {job.error['message']}", level="error")
        elif status == "cancelled":
            job.estimated_finish = None
            self._job_event(job, "The job has been cancelled")

    # ---- chat completions -----------------------------------------------------------------------------
    def _chat_completion(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model")
        if not model or not isinstance(model, str):
            raise _ApiError(400, "Missing required parameter: 'model'.", param="model",
                            code="missing_required_parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _ApiError(400, "Missing required parameter: 'messages'.", param="messages",
                            code="missing_required_parameter")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise _ApiError(400, f"Invalid 'messages[{i}]': expected an object with a 'role'.",
                                param=f"messages[{i}]")
        if body.get("stream"):
            raise _ApiError(400, "The stub does not support streaming chat completions ('stream': true).",
                            param="stream")
        n = body.get("n") or 1
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
            raise _ApiError(400, f"Invalid 'n': {n!r}, expected an integer between 1 and 128.", param="n")
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                       or max_tokens < 1):
            raise _ApiError(400, f"Invalid 'max_tokens': {max_tokens!r}, expected a positive integer.",
                            param="max_tokens")
        if not self._model_known(model):
            raise _ApiError(404, f"The model `{model}` does not exist or you do not have access to it.",
                            code="model_not_found")
        with self._lock:
            scripted = [f for pattern, f in self.chat_replies.items() if fnmatch.fnmatchcase(model, pattern)]
        reply = (scripted[0] if scripted else self.chat_reply)(copy.deepcopy(messages), model)
        if reply is not None and not isinstance(reply, str):
            raise TypeError(f"chat_reply returned {type(reply).__name__}, expected str or None")
        prompt_tokens = 3 + sum(4 + _approx_tokens(_message_text(m)) for m in messages)
        if reply is None:  # a response with no choices, as some compatible servers send
            return {"id": _new_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
                    "model": model, "choices": [],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens}}
        finish_reason = "stop"
        completion_tokens = _approx_tokens(reply)
        if max_tokens is not None and completion_tokens > max_tokens:
            reply, completion_tokens, finish_reason = reply[: max_tokens * 4], max_tokens, "length"
        return {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": reply, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
                for i in range(n)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens * n,
                "total_tokens": prompt_tokens + completion_tokens * n,
            },
            "service_tier": "default",
            "system_fingerprint": "fp_stub",
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve the OpenAI Files/Uploads/fine-tuning/chat API stub until interrupted.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="expected bearer key; '' disables auth")
    parser.add_argument("--processing-polls", type=int, default=0)
    args = parser.parse_args(argv)
    stub = StubOpenAI(api_key=args.api_key or None, processing_polls=args.processing_polls,
                      host=args.host, port=args.port)
    stub.start()
    print(stub.base_url, flush=True)
    print(f"openai stub serving on {stub.base_url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    stub.serve_until_interrupted()
    return 0


if __name__ == "__main__":
    sys.exit(main())
