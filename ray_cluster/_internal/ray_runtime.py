"""Start or join Ray with a private control plane."""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import ray

from ray_cluster.config import Settings
from ray_cluster.errors import ConfigError

__all__ = ["connect_ray", "default_object_store_bytes", "has_gpus"]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def default_object_store_bytes() -> int:
    """Size a local object store to the machine: a quarter of /dev/shm, <= 2 GiB."""
    try:
        shm = shutil.disk_usage("/dev/shm").total
    except OSError:
        shm = 1 << 30
    return int(max(128 << 20, min(shm // 4, 2 << 30)))


def connect_ray(settings: Settings, log_to_driver: bool = False) -> bool:
    """Join the configured Ray cluster, or start a local one on loopback.

    Args:
        settings: ``cluster.address`` decides: unset starts a local Ray bound to
            127.0.0.1 with a sized object store; ``auto`` or ``ray://...`` joins.
        log_to_driver: Forward worker logs to this process.

    Returns:
        True when this call started Ray (the caller shuts it down).
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
        if address.startswith("ray://") or address == "auto":
            ray.init(address=address, **kwargs)
            return True
        raise ConfigError(
            f"cluster.address {address!r} is neither 'auto' nor 'ray://HOST:PORT'",
            key="cluster.address",
        )
    num_cpus = settings.cluster.num_cpus or os.cpu_count() or 1
    store_bytes = (
        settings.cluster.object_store_mb * 1024 * 1024
        if settings.cluster.object_store_mb
        else default_object_store_bytes()
    )
    ray.init(
        num_cpus=num_cpus,
        object_store_memory=store_bytes,
        _node_ip_address=LOOPBACK,
        **kwargs,
    )
    logger.info(
        "started local Ray: %d CPUs, object store %d MiB", num_cpus, store_bytes >> 20
    )
    return True


def has_gpus() -> bool:
    """Return whether the cluster has (or can add) GPU resources."""
    return float(ray.cluster_resources().get("GPU", 0.0)) > 0
