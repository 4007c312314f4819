"""The failure notification kept in the repository: a webhook block and an automation on prepare/fine-tune runs.

``ftprep notify`` calls :func:`install`. It saves one Custom Webhook notification block and one automation, both
by name (:mod:`ftprep.names`), so running it again updates them instead of adding copies. The automation reacts
to a ``prefect.flow-run.Failed`` or ``prefect.flow-run.Crashed`` event of a run of the prepare or fine-tune flow
(a scheduled run, a UI run or a CLI run against the same server) and posts the run's one-line error and a link to
the run. The server renders the message: the link needs ``PREFECT_UI_URL`` in the server's environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from ftprep.errors import InputError
from ftprep.names import NOTIFY_AUTOMATION, NOTIFY_BLOCK, NOTIFY_FLOWS

EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")

# Jinja templates, rendered by the server's actions service when the automation fires. ``ui_url`` is None when
# the server knows no PREFECT_UI_URL (nor a PREFECT_API_URL to derive it from): the message says so then.
SUBJECT = ("ftprep: {{ flow.name }} run {{ flow_run.name }}"
           "{% if deployment %} (deployment {{ deployment.name }}){% endif %} {{ flow_run.state.name | lower }}")
BODY = ("{{ flow_run.state.message }}\n"
        "{{ flow_run | ui_url or '(no link: set PREFECT_UI_URL where the Prefect server runs)' }}")

# The webhook receives JSON {"text": "<subject>: <body>"}: what Slack, Mattermost and Rocket.Chat incoming
# webhooks read. The URL is kept in the block's secret values, so the UI and the API show it masked.
_URL_KEY = "webhook_url"
PAYLOAD = {"text": "{{subject}}: {{body}}"}


@dataclass(frozen=True)
class Installed:
    """What :func:`install` did: the block and automation ids and whether each was created or updated."""

    block_id: str
    block_created: bool
    automation_id: str
    automation_created: bool
    destination: str  # scheme://host of the webhook, without its path (a webhook's path is its credential)


def destination(url: str) -> str:
    """``scheme://host[:port]`` of a webhook URL; an :class:`InputError` if it is not an http(s) URL."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or parts.scheme not in ("http", "https"):
        raise InputError("the webhook URL is not an http(s) URL; give --webhook-url https://... or set "
                         "FTPREP_NOTIFY_WEBHOOK_URL")
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


def webhook_block(url: str):
    """The notification block that posts to ``url`` (kept as a secret value, not in the block's plain fields)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(name="ftprep", url="{{" + _URL_KEY + "}}", method="POST",
                                          json_data=dict(PAYLOAD), secrets={_URL_KEY: url})


def automation(block_id):
    """The automation: one notification per failed or crashed prepare/fine-tune run, through block ``block_id``."""
    from prefect.automations import AutomationCore, EventTrigger, Posture, SendNotification

    trigger = EventTrigger(
        expect=set(EVENTS),
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(NOTIFY_FLOWS)},
        for_each={"prefect.resource.id"},  # each run on its own
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )
    return AutomationCore(
        name=NOTIFY_AUTOMATION,
        description=f"Posts to the webhook block {NOTIFY_BLOCK!r} when a {' or '.join(NOTIFY_FLOWS)} run fails or "
                    "crashes. Kept by `ftprep notify` (ftprep/notify.py): run it again to update.",
        enabled=True,
        trigger=trigger,
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )


def install(url: str) -> Installed:
    """Save the block and the automation on the server ``PREFECT_API_URL`` names, creating or updating each.

    Leaves exactly one block and one automation of ftprep's names (older duplicates of the automation are
    deleted). An unreachable server is an :class:`InputError`.
    """
    import httpx
    from prefect import get_client
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.exceptions import ObjectNotFound

    where = destination(url)
    try:
        try:
            CustomWebhookNotificationBlock.load(NOTIFY_BLOCK)
            block_created = False
        except (ValueError, ObjectNotFound):  # Prefect's "Unable to find block document named ..."
            block_created = True
        block_id = webhook_block(url).save(NOTIFY_BLOCK, overwrite=True)
        spec = automation(block_id)
        with get_client(sync_client=True) as client:
            existing = sorted(client.read_automations_by_name(NOTIFY_AUTOMATION), key=lambda a: str(a.id))
            if existing:
                automation_id = existing[0].id
                client.update_automation(automation_id, spec)
                for duplicate in existing[1:]:
                    client.delete_automation(duplicate.id)
            else:
                automation_id = client.create_automation(spec)
    except (httpx.ConnectError, httpx.TimeoutException) as e:
        from prefect.settings import PREFECT_API_URL

        raise InputError(f"the Prefect server at {PREFECT_API_URL.value()} cannot be reached "
                         f"({type(e).__name__}); start it (prefect server start) or set PREFECT_API_URL") from None
    return Installed(str(block_id), block_created, str(automation_id), not existing, where)
