"""Ray's fake multi-node autoscaler, configured for medray's pools."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ray.autoscaler._private.util import validate_config
from ray.cluster_utils import AutoscalingCluster

GCS_ADDRESS = "127.0.0.1:6379"
HEAD_TYPE = "ray.head.default"
#: Seconds a worker node may idle before the autoscaler removes it.
IDLE_TIMEOUT_S = 15
MIB = 1 << 20


def fake_cluster_config() -> dict[str, Any]:
    """Return our launcher configuration for Ray's fake multi-node provider.

    Ray 2.60's wheel lacks the example file `AutoscalingCluster` reads, so the
    whole configuration is written here: a head with 1 CPU (the driver's
    node), a CPU worker type offering ``medray_cpu`` and a fake-GPU type.
    """
    workers = {
        "cpu": {
            "resources": {"CPU": 1, "medray_cpu": 1, "object_store_memory": 96 * MIB},
            "node_config": {},
            "min_workers": 0,
            "max_workers": 2,
        },
        "gpu": {
            "resources": {"CPU": 1, "GPU": 1, "object_store_memory": 96 * MIB},
            "node_config": {},
            "min_workers": 0,
            "max_workers": 2,
        },
    }
    return {
        "cluster_name": "medray-fake",
        "max_workers": 4,
        "upscaling_speed": 2.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_S / 60,
        "provider": {
            "type": "fake_multinode",
            # Every fake node has the same IP: the autoscaler must tell them
            # apart by node id, and it has no SSH to restart or update them.
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {"ssh_user": "ray"},
        "docker": {},
        "head_node_type": HEAD_TYPE,
        "available_node_types": {
            **workers,
            HEAD_TYPE: {"resources": {}, "node_config": {}, "max_workers": 0},
        },
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def _ray_cli() -> str:
    found = shutil.which("ray")
    expected = Path(sys.executable).parent / "ray"
    if found is None or Path(found).resolve() != expected.resolve():
        pytest.fail(
            f"`ray` on PATH is {found}, not {expected}: put the virtualenv's bin "
            "first on PATH (make test does)"
        )
    return found


class FakeCluster(AutoscalingCluster):  # type: ignore[misc]
    """Ray's `AutoscalingCluster` with our configuration in place of its example.

    Args:
        config: The whole launcher configuration (`fake_cluster_config`).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        _ray_cli()
        validate_config(config)
        self._full_config = config
        super().__init__(
            head_resources={"CPU": 1, "object_store_memory": 128 * MIB},
            worker_node_types=config["available_node_types"],
        )

    def _generate_config(
        self,
        head_resources: dict[str, Any],
        worker_node_types: dict[str, Any],
        autoscaler_v2: bool = False,
        **config_kwargs: Any,
    ) -> dict[str, Any]:
        return json.loads(json.dumps(self._full_config))

    def start_with(self, env: dict[str, str]) -> None:
        """Start the head (and the autoscaler) with ``env`` added to theirs."""
        system = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
        self.start(_system_config=system, override_env=env)


def alive_workers() -> dict[str, str]:
    """Return node id -> pool ("cpu" or "gpu") of alive worker nodes."""
    import ray

    found = {}
    for node in ray.nodes():
        resources = node.get("Resources", {})
        if not node.get("Alive") or "node:__internal_head__" in resources:
            continue
        found[node["NodeID"]] = "gpu" if resources.get("GPU") else "cpu"
    return found


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 1.0
) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)
