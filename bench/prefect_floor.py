"""The floor of the everyday job: the least a Prefect command that uploads two files with the SDK takes.

One flow whose one task sends the two files (already written) with the SDK's ``files.create``; Prefect's flow
heartbeat off (its thread is joined when a flow ends: up to 1 s, see ``ftprep/heartbeat.py``), turned off as
``ftprep.heartbeat.ours`` does (not with ``temporary_settings``: 25 ms); the process ends as the ``ftprep``
command does: Prefect's exit handlers send the run's logs and events, then ``os._exit`` (no interpreter teardown;
leaving before those handlers would lose the run's logs on the server, which no real command may do). Nothing
else: no loading, formatting, writing, validation, look for a remote copy, artifact, Variable or manifest. Only
what every such command pays: starting Python, importing Prefect and the SDK, the flow run and its task runs,
two requests, the run's logs sent. ``--tasks N`` adds empty task runs before the upload, up to N in all
(ftprep's prepare has 10).

    python bench/prefect_floor.py TRAIN.jsonl VALIDATION.jsonl [--tasks 10]
"""

from __future__ import annotations

import atexit
import os
import sys

_code = [1]  # 0 once the flow has returned: a run that raised still exits non-zero
atexit.register(lambda: os._exit(_code[0]))  # before Prefect's own exit handlers: runs after them, as ftprep's

from openai import OpenAI  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.context import SettingsContext, get_settings_context  # noqa: E402


@task
def empty(i: int) -> int:
    return i


@task
def upload(paths: list[str]) -> list[str]:
    client = OpenAI()
    ids = []
    for path in paths:
        with open(path, "rb") as f:
            ids.append(client.files.create(file=f, purpose="fine-tune").id)
    return ids


@flow
def floor(paths: list[str], tasks: int = 1) -> list[str]:
    for i in range(tasks - 1):
        empty(i)
    return upload(paths)


if __name__ == "__main__":
    args = sys.argv[1:]
    tasks = 1
    if "--tasks" in args:
        at = args.index("--tasks")
        tasks = int(args[at + 1])
        del args[at:at + 2]
    context = get_settings_context()
    settings = context.settings
    quiet = settings.model_copy(update={"flows": settings.flows.model_copy(update={"heartbeat_frequency": None})})
    with SettingsContext(profile=context.profile, settings=quiet):
        print(floor(args, tasks), flush=True)
    _code[0] = 0
