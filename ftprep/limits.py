"""Prefect global concurrency limits that every run on every worker shares for its OpenAI requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ftprep.remote import RemotePolicy

_limits_checked: set[tuple[str, int, float]] = set()
_limits_lock = threading.Lock()


def ensure_limits(policy: RemotePolicy) -> None:
    """Create or update the Prefect global concurrency limits the policy asks for (once per process)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    from ftprep.names import OPENAI_CONCURRENCY_LIMIT, OPENAI_RATE_LIMIT

    wanted = []
    if policy.concurrency:
        wanted.append((OPENAI_CONCURRENCY_LIMIT, policy.concurrency, 0.0))
    if policy.rpm:
        wanted.append((OPENAI_RATE_LIMIT, policy.rpm, policy.rpm / 60.0))
    wanted = [w for w in wanted if w not in _limits_checked]
    if not wanted:
        return
    with _limits_lock, get_client(sync_client=True) as client:
        for name, limit, decay in wanted:
            if (name, limit, decay) in _limits_checked:
                continue
            try:
                current = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                current = None
            if current is None:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                        name=name, limit=limit, slot_decay_per_second=decay, active=True))
                except PrefectHTTPStatusError as e:  # another process created it meanwhile
                    if e.response.status_code != 409:
                        raise
                    current = client.read_global_concurrency_limit_by_name(name)
            if current is not None and (current.limit != limit or (current.slot_decay_per_second or 0.0) != decay):
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(
                    limit=limit, slot_decay_per_second=decay))
            _limits_checked.add((name, limit, decay))


@contextmanager
def slot(policy: RemotePolicy) -> Iterator[None]:
    """Hold one slot of the shared OpenAI limits for one request (nothing when no limit is configured).

    Slots are leases of ``lease_seconds``, so a killed run frees its slot soon; the rate limit's slots decay.
    """
    if not policy.concurrency and not policy.rpm:
        yield
        return
    from prefect.concurrency.sync import concurrency, rate_limit

    from ftprep.names import OPENAI_CONCURRENCY_LIMIT, OPENAI_RATE_LIMIT

    ensure_limits(policy)
    if policy.rpm:
        rate_limit(OPENAI_RATE_LIMIT, strict=True)
    if policy.concurrency:
        with concurrency(OPENAI_CONCURRENCY_LIMIT, occupy=1, lease_duration=policy.lease_seconds, strict=True):
            yield
    else:
        yield
