"""Shared result storage: FTPREP_RESULT_STORAGE puts Prefect's persisted results and cache records at one URL.

Prefect keeps the persisted results of a flow and its tasks, and the records its cache policies look up, in the
flow's result storage: by default ``PREFECT_HOME/storage`` on the machine that ran it, so a run on machine B misses
the cache hits of a run on machine A and cannot read A's results. With ``FTPREP_RESULT_STORAGE=s3://bucket/prefix``
(any fsspec URL every worker reaches) every ftprep flow keeps them in Prefect's fsspec-based ``RemoteFileSystem``
block at that URL. Prefect wants a flow's result storage saved on the server (its id goes into each result's
metadata, so any machine can read a result back), so the block is saved under a name made from the URL
(:func:`ftprep.names.result_storage_block`): every machine that sets the same URL names the same block. The flows
name it when they are defined (:func:`flow_storage`); :func:`ensure` saves it, from every flow command before its
flow runs and from the team setup step (scripts/team_setup.py), before any worker runs a deployment. Credentials
are never in the block: s3fs reads the standard AWS variables (``AWS_ENDPOINT_URL`` too) on each machine.
"""

from __future__ import annotations

from ftprep.errors import InputError
from ftprep.names import result_storage_block
from ftprep.settings import RESULT_STORAGE_ENV, result_storage_url

BLOCK_TYPE = "remote-file-system"  # prefect.filesystems.RemoteFileSystem


def slug(url: str) -> str:
    """``block-type/block-name`` of the block for ``url``, as Prefect's ``result_storage`` takes it."""
    return f"{BLOCK_TYPE}/{result_storage_block(url)}"


def flow_storage() -> str | None:
    """The ``result_storage`` of every ftprep flow: the block for FTPREP_RESULT_STORAGE, or None for Prefect's
    default (``PREFECT_HOME/storage``). Read when the flows are defined; Prefect loads the block when a run starts."""
    url = result_storage_url()
    return slug(url) if url else None


def _check_scheme(url: str) -> None:
    import fsspec

    scheme = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as e:
        raise InputError(f"{RESULT_STORAGE_ENV}={url!r}: fsspec cannot open {scheme}:// URLs here "
                         f"({str(e).splitlines()[0]}); install its package (s3fs for s3://) or unset it") from None


def ensure(url: str | None) -> str | None:
    """Save the block for ``url`` on the Prefect server unless it is there already; return its slug (None: no
    shared storage). Two processes saving it at once both succeed (the same name and content)."""
    if not url:
        return None
    from prefect.filesystems import RemoteFileSystem

    _check_scheme(url)
    name = result_storage_block(url)
    try:
        if RemoteFileSystem.load(name, validate=False).basepath == url:
            return slug(url)
    except ValueError:  # no such block yet
        pass
    RemoteFileSystem(basepath=url).save(name, overwrite=True)
    return slug(url)
