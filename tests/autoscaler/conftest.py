"""A fake multi-node autoscaling Ray cluster on this machine, and a tiny model.

Ray's fake node provider starts each "node" as a set of local processes
(raylet, agents, workers) from the autoscaler monitor, itself a child of
``ray start --head``: they inherit the environment the cluster starts with,
which is how storage keys and the Ray token reach the fake nodes. Starting
and stopping the cluster runs ``ray stop --force``, which ends every Ray
process on the machine: these tests are marked ``autoscaler`` and run alone.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from ray.autoscaler._private.util import validate_config

from models import (
    ModelCard,
    get_builder,
    reference_input_spec,
    save_weights,
    sha256_file,
)
from ray_cluster.registry import ModelRegistry
from ray_cluster.storage import ObjectStore

GCS_ADDRESS = "127.0.0.1:6379"
HEAD_TYPE = "ray.head.default"
#: Seconds a worker node may idle before the autoscaler removes it.
IDLE_TIMEOUT_S = 15
TINY_LABELS = ["ct_axial", "ct_localizer", "mr", "radiograph", "other"]
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
        "provider": {"type": "fake_multinode"},
        "auth": {},
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


class FakeCluster:
    """Start, inspect and stop the fake autoscaling cluster."""

    def __init__(self, tmp: Path) -> None:
        self.config_path = tmp / "fake-cluster.json"
        self.ray = _ray_cli()

    def start(self, env: dict[str, str]) -> None:
        """Start the head (and with it the autoscaler) with ``env`` added."""
        config = fake_cluster_config()
        validate_config(config)
        self.config_path.write_text(json.dumps(config))
        subprocess.run([self.ray, "stop", "--force"], check=True, capture_output=True)
        system = {
            "health_check_period_ms": 1000,
            "health_check_failure_threshold": 3,
        }
        command = [
            self.ray,
            "start",
            "--head",
            "--port=6379",
            f"--autoscaling-config={self.config_path}",
            "--num-cpus=1",
            f"--object-store-memory={128 * MIB}",
            "--include-dashboard=false",
            f"--system-config={json.dumps(system, separators=(',', ':'))}",
        ]
        full_env = {
            **os.environ,
            **env,
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "RAY_FAKE_CLUSTER": "1",
        }
        subprocess.run(command, check=True, env=full_env, capture_output=True)

    def stop(self) -> None:
        """Stop every Ray process on the machine (``ray stop --force``)."""
        subprocess.run([self.ray, "stop", "--force"], check=False, capture_output=True)


@pytest.fixture(scope="module")
def fake_cluster(
    s3_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeCluster]:
    """The fake cluster, with this process connected to it as the driver.

    Storage keys and a fresh Ray token go into the environment the cluster
    starts with, and into this process's for the driver.
    """
    import ray

    from ray_cluster._internal.ray_runtime import loopback_node

    env = {
        "MEDRAY_STORAGE__ACCESS_KEY": s3_server.access_key,
        "MEDRAY_STORAGE__SECRET_KEY": s3_server.secret_key,
        "MEDRAY_TORCH_THREADS": "1",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    saved = dict(os.environ)
    cluster = FakeCluster(tmp_path_factory.mktemp("fake-cluster"))
    os.environ.update({k: v for k, v in env.items() if k.startswith("RAY_AUTH")})
    try:
        cluster.start(env)
        with loopback_node():
            ray.init(address=GCS_ADDRESS, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()
        os.environ.clear()
        os.environ.update(saved)


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


@pytest.fixture(scope="module")
def tiny_model(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> ModelCard:
    """An untrained reference-architecture model in the registry (fast to run)."""
    torch.manual_seed(0)
    model = get_builder("resnet18_1ch")(num_classes=len(TINY_LABELS), in_channels=1)
    weights = tmp_path_factory.mktemp("tiny-model") / "weights.safetensors"
    save_weights(model.state_dict(), weights)
    spec = reference_input_spec(32)
    spec["volume"] = dict(spec.get("volume", {}), slices=3)
    card = ModelCard(
        name="tiny-autoscaler",
        version="1",
        architecture="resnet18_1ch",
        sha256=sha256_file(weights),
        labels=TINY_LABELS,
        input=spec,
        metrics={},
        split={},
        description="untrained model for autoscaler tests",
        intended_use="tests only",
        created_by="tests",
    )
    settings = s3_server.settings
    ModelRegistry(ObjectStore.from_settings(settings.storage), settings).push(
        card, weights
    )
    return card
