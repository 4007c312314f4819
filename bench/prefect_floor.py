"""The floor of the everyday job: the least a Prefect command that uploads two files with the SDK takes.

One flow whose one task sends the two files (already written) with the SDK's ``files.create``; Prefect's flow
heartbeat off (its thread is joined when a flow ends: up to 1 s, see ``ftprep/heartbeat.py``); the process ends
the moment the flow returns (``os._exit``: no interpreter teardown). Nothing else: no loading, formatting,
writing, validation, look for a remote copy, artifact, Variable or manifest. Only what every such command pays:
starting Python, importing Prefect and the SDK, the flow run and its task runs, two requests.
``--tasks N`` adds empty task runs before the upload, up to N in all (ftprep's prepare has 10).

    python bench/prefect_floor.py TRAIN.jsonl VALIDATION.jsonl [--tasks 10]
"""

from __future__ import annotations

import os
import sys

from openai import OpenAI
from prefect import flow, task
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings


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
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        print(floor(args, tasks), flush=True)
    os._exit(0)
