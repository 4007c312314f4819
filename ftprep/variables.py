"""Reading the Prefect Variables one flow leaves for the next: a value of the wrong shape is a one-line error."""

from __future__ import annotations

import weakref
from contextvars import ContextVar
from typing import Any

from ftprep.errors import InputError
from ftprep.names import DEFAULT_PROJECT, LATEST_FILES, LATEST_MODEL, variable_name

_FIX = {LATEST_FILES: "run prepare again, or pass --training-file",
        LATEST_MODEL: "run fine-tune again, or pass --model"}
_WRITER = {LATEST_FILES: "prepare", LATEST_MODEL: "fine-tune"}
_TEXT_FIELDS = {LATEST_FILES: ("remote", "template", "train_file_id", "validation_file_id"),
                LATEST_MODEL: ("job_id", "fine_tuned_model")}
_COUNT_FIELDS = ("train_examples", "validation_examples", "train_billable_tokens")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _malformed(base: str, project: str, what: str) -> InputError:
    name = variable_name(base, project)
    return InputError(f"Prefect Variable {name!r} {what}, not what {_WRITER[base]} writes; delete it (prefect "
                      f"variable unset {name}) and {_FIX[base]}")


def read_record(base: str, project: str = DEFAULT_PROJECT) -> dict[str, Any]:
    """The JSON object in Variable ``base`` of ``project`` ({} when unset); InputError naming it when it is
    anything else."""
    from prefect.variables import Variable

    value = Variable.get(variable_name(base, project))
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _malformed(base, project, f"holds a {type(value).__name__} ({_shown(value)})")
    for key in _TEXT_FIELDS.get(base, ()):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise _malformed(base, project, f"has {key} = {_shown(value[key])}")
    for key in _COUNT_FIELDS if base == LATEST_FILES else ():
        count = value.get(key)
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
            raise _malformed(base, project, f"has {key} = {_shown(count)}")
    return value


def latest_files(project: str = DEFAULT_PROJECT) -> dict[str, Any]:
    """What the project's latest prepare run uploaded (file ids, remote, counts), or {} when nothing was."""
    return read_record(LATEST_FILES, project)


def latest_model(project: str = DEFAULT_PROJECT) -> str | None:
    """The model of the project's latest successful fine-tuning job, or None when there is none yet."""
    record = read_record(LATEST_MODEL, project)
    if not record:
        return None
    model = record.get("fine_tuned_model")
    if not isinstance(model, str) or not model.strip():
        raise _malformed(LATEST_MODEL, project, "has no fine_tuned_model")
    return model


# Prefect's server on SQLite answers 503 to a Variable update when another write (usually its own event
# persister's) committed between the update's read and its write ("database is locked"). The answer has no
# Retry-After, so Prefect's client waits 2 s, then 4, 8, 16 and 32: about 1 everyday prepare in 8 took 2 s longer.
# Variable writes ask again after 0.05 s, then 0.25, 2, 16 and 44 s: as patient in all as Prefect's 5 retries (62 s,
# for a server that is restarting), much sooner for a lock that is gone the moment after. Answers past those (more
# retries, PREFECT_CLIENT_MAX_RETRIES; answers Prefect does not count, as a "Prefect-Maintenance: true") wait 44 s.
WAITS = (0.05, 0.25, 2.0, 16.0, 44.0)
_asked: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # request -> answers made to wait
_WRITING: ContextVar[bool] = ContextVar("ftprep_variable_write", default=False)


def ask_again_soon(response: Any) -> None:
    """httpx response hook: a 502/503 without Retry-After gets one, growing as above (Prefect's client sends the
    same request object again, and waits what the header says)."""
    if response.status_code in (502, 503) and "Retry-After" not in response.headers:
        n = _asked.get(response.request, 0)
        _asked[response.request] = min(n + 1, len(WAITS) - 1)
        response.headers["Retry-After"] = f"{WAITS[n]:g}"


def _while_writing(response: Any) -> None:
    """The hook :func:`write` adds to the client it uses (the flow run's own, when there is one): only write's own
    requests are asked again sooner; the client's other requests keep Prefect's waits."""
    if _WRITING.get():
        ask_again_soon(response)


def write(name: str, value: Any) -> None:
    """Set Variable ``name`` (redacted), also when another run creates it at the same moment.

    As Prefect's ``Variable.set(overwrite=True)``: read, then update or create. Two first runs that finish
    together both try to create it, and one gets ObjectAlreadyExists; that one sets it again. A busy server is
    asked again within 0.05 s, not 2 s (:func:`ask_again_soon`).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate
    from prefect.exceptions import ObjectAlreadyExists

    from ftprep.redact import redact_obj

    value = redact_obj(value)
    token = _WRITING.set(True)
    # the flow run's client when there is one, as Variable.set: a client of its own (httpx_settings) would cost
    # its TLS context, connection and CSRF probe, 30-70 ms on each write inside a flow
    try:
        with get_client(sync_client=True) as client:
            # its httpx client is private to Prefect: without it, the write still happens, with Prefect's waits
            # (tests/test_variables.py fails then, so an upgrade of Prefect that renames it is noticed)
            hooks = getattr(getattr(client, "_client", None), "event_hooks", {}).get("response")
            if hooks is not None and _while_writing not in hooks:
                hooks.append(_while_writing)
            for attempt in range(3):
                try:
                    if client.read_variable_by_name(name) is None:
                        client.create_variable(VariableCreate(name=name, value=value, tags=[]))
                    else:
                        client.update_variable(VariableUpdate(name=name, value=value, tags=[]))
                    return
                except ObjectAlreadyExists:
                    if attempt == 2:
                        raise
    finally:
        _WRITING.reset(token)
