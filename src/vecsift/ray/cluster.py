"""Connecting to a Ray cluster for one job, and leaving nothing running that the job started."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from vecsift.errors import UsageError

#: how long an address may take to accept a TCP connection before it counts as unreachable (Ray itself
#: waits a minute or more on a dead GCS address)
CONNECT_SECONDS = 5.0


@contextmanager
def ray_cluster(address: str = "local", *, num_cpus: int | None = None,
                object_store_bytes: int | None = None) -> Iterator[None]:
    """Ray, connected for the block.

    ``"local"`` starts a private cluster on this machine and shuts it down on every exit (errors, Ctrl-C
    and SIGTERM included); ``"auto"`` joins the cluster ``ray start`` runs here; ``"ray://HOST:PORT"`` (Ray
    Client) or ``"HOST:PORT"`` (a head node's GCS) a remote one. A Ray already initialized in this process (a
    notebook, a test session) is used as it is and left running.
    """
    if ray.is_initialized():
        yield
        return
    if address not in ("local", "auto"):
        _check_reachable(address)
    options = {"include_dashboard": False, "num_cpus": num_cpus, "object_store_memory": object_store_bytes} \
        if address == "local" else {}
    try:
        ray.init(address=address, logging_level=logging.WARNING, **options)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise UsageError(f"cannot connect to the Ray cluster at {address!r}: {str(err).splitlines()[0]}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """A quick TCP connect to HOST:PORT, so a wrong address fails in seconds with a clear message."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"Ray address {address!r} is not 'local', 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS):
            pass
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err) or type(err).__name__
        raise UsageError(f"cannot reach the Ray cluster at {address!r}: {reason}") from None
