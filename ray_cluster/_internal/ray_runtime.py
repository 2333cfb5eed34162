"""Start or join Ray with a private control plane.

A local Ray started here listens on loopback only. Ray 2.60 binds its gRPC
servers (GCS, raylet, every worker), the runtime-env agent, the metrics
exporter and the client server to the node's address, and it replaces an
explicit ``127.0.0.1`` node address with the machine's routable one unless its
single-host switch is off. `loopback_node` turns that switch off while the
local Ray starts, so every listener ends up on 127.0.0.1 (checked with
``ss -ltnp`` in ``tests/autoscaler/test_bind_addresses.py``). The dashboard
stays off, and token authentication stays on (Ray's default for a local
cluster).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
from collections.abc import Iterator
from typing import Any

import ray

from ray_cluster.config import Settings
from ray_cluster.errors import ConfigError

__all__ = [
    "LOOPBACK",
    "autoscaler_max_resources",
    "connect_ray",
    "default_object_store_bytes",
    "free_loopback_port",
    "has_gpus",
    "loopback_node",
    "refresh_token_auth",
]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

#: Ray's single-host switch; read by ``ray._private.ray_constants`` at import.
_CLUSTER_SWITCH_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_AUTH_MODE_ENV = "RAY_AUTH_MODE"
_GCS_ADDRESS = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")


def default_object_store_bytes() -> int:
    """Size a local object store to the machine.

    Ray's default takes 30% of memory, backed by /dev/shm, which on small
    machines and containers fills the shared memory other processes need. This
    takes a quarter of /dev/shm, at most a sixteenth of physical memory and at
    most 2 GiB, and at least 128 MiB.

    Returns:
        The object store size in bytes.
    """
    try:
        shm = shutil.disk_usage("/dev/shm").total
    except OSError:
        shm = 1 << 30
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        memory = 8 << 30
    return int(max(128 << 20, min(shm // 4, memory // 16, 2 << 30)))


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """Make a Ray node started inside this block take 127.0.0.1 as its address.

    Sets Ray's single-host switch in this process and in the environment the
    node's processes inherit, and restores both on exit. Use it around
    ``ray.init`` without an address, or around starting a test cluster.

    Yields:
        Nothing; the switch is off inside the block.
    """
    from ray._private import ray_constants

    saved_env = os.environ.get(_CLUSTER_SWITCH_ENV)
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_CLUSTER_SWITCH_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_CLUSTER_SWITCH_ENV, None)
        else:
            os.environ[_CLUSTER_SWITCH_ENV] = saved_env


def _warn_if_auth_disabled(where: str) -> None:
    mode = os.environ.get(_AUTH_MODE_ENV, "")
    if mode.lower() == "disabled":
        logger.warning(
            "Ray token authentication is disabled (%s=disabled) for %s; anyone "
            "who reaches a Ray port can run code. Unset it, or set it to 'token' "
            "with RAY_AUTH_TOKEN on every node",
            _AUTH_MODE_ENV,
            where,
        )


def refresh_token_auth() -> None:
    """Make Ray in this process see ``RAY_AUTH_MODE=token`` set after it read it.

    Ray reads its authentication mode once per process and caches the token;
    a driver whose environment got the mode and token later (a test, a
    notebook that loads an env file) would otherwise call without a token.
    """
    if os.environ.get(_AUTH_MODE_ENV, "").lower() != "token":
        return
    from ray import _raylet  # its stub lacks the authentication names

    raylet: Any = _raylet
    if raylet.get_authentication_mode() != raylet.AuthenticationMode.TOKEN:
        raylet.Config.initialize("")
    raylet.AuthenticationTokenLoader.instance().reset_cache()


def _is_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rpartition(":")[0]
    return host in (LOOPBACK, "localhost", "[::1]")


def connect_ray(settings: Settings, log_to_driver: bool = False) -> bool:
    """Join the configured Ray cluster, or start a local one on loopback.

    Args:
        settings: ``cluster.address`` decides: unset starts a local Ray bound to
            127.0.0.1 with a sized object store; ``auto``, ``ray://HOST:PORT``
            or a GCS ``HOST:PORT`` joins a running cluster.
        log_to_driver: Forward worker logs to this process.

    Returns:
        True when this call started or joined Ray (the caller shuts it down).

    Raises:
        ConfigError: ``cluster.address`` has none of the accepted forms.
    """
    if ray.is_initialized():
        return False
    address = settings.cluster.address
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": log_to_driver,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    if address:
        if not (
            address == "auto"
            or address.startswith("ray://")
            or _GCS_ADDRESS.match(address)
        ):
            raise ConfigError(
                f"cluster.address {address!r} is neither 'auto', 'ray://HOST:PORT' "
                "nor a GCS 'HOST:PORT'",
                key="cluster.address",
            )
        _warn_if_auth_disabled("the driver joining the cluster")
        refresh_token_auth()
        kwargs.pop("include_dashboard")
        with loopback_node() if _is_loopback(address) else contextlib.nullcontext():
            ray.init(address=address, **kwargs)
        return True
    num_cpus = settings.cluster.num_cpus or os.cpu_count() or 1
    store_bytes = (
        settings.cluster.object_store_mb * 1024 * 1024
        if settings.cluster.object_store_mb
        else default_object_store_bytes()
    )
    _warn_if_auth_disabled("the local Ray")
    with loopback_node():
        # "local": a new Ray of our own, even when another one (a `ray start`
        # cluster, RAY_ADDRESS) runs on this machine.
        ray.init(
            address="local",
            num_cpus=num_cpus,
            object_store_memory=store_bytes,
            **kwargs,
        )
    logger.info(
        "started local Ray on %s: %d CPUs, object store %d MiB",
        LOOPBACK,
        num_cpus,
        store_bytes >> 20,
    )
    return True


def autoscaler_max_resources() -> dict[str, float]:
    """Return the most of each resource the autoscaler may add, when it says.

    KubeRay and autoscaler v2 publish their node groups in the GCS; the v1
    launcher autoscaler does not, and then this is empty.

    Returns:
        Resource name to the most the cluster can hold; empty when unknown.
    """
    try:
        from ray._private.state import state

        found = state.get_max_resources_from_cluster_config()
    except Exception as exc:  # Ray internals vary between releases.
        logger.debug("no autoscaler node groups: %s", type(exc).__name__)
        return {}
    return {str(k): float(v) for k, v in (found or {}).items()}


def has_gpus() -> bool:
    """Return whether the cluster has GPUs or node groups that add them.

    On a v1 launcher cluster whose GPU nodes scale from zero this cannot see
    the GPU node type: set ``cluster.use_gpu: always`` there.
    """
    if float(ray.cluster_resources().get("GPU", 0.0)) > 0:
        return True
    return autoscaler_max_resources().get("GPU", 0.0) > 0


def free_loopback_port() -> int:
    """Return a TCP port free on 127.0.0.1 now (another process may take it later)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
