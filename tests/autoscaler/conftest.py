"""A fake multi-node autoscaling Ray cluster on this machine, and a tiny model.

Ray's fake node provider starts each "node" as a set of local processes
(raylet, agents, workers) from the autoscaler monitor, itself a child of
``ray start --head``: they inherit the environment the cluster starts with,
which is how storage keys and the Ray token reach the fake nodes. Starting
and stopping the cluster runs ``ray stop --force``, which ends every Ray
process on the machine: these tests are marked ``autoscaler`` and run alone.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from _fake_cluster import GCS_ADDRESS, FakeCluster, fake_cluster_config

from models import (
    ModelCard,
    make_untrained,
)
from ray_cluster.registry import ModelRegistry
from ray_cluster.storage import ObjectStore


@pytest.fixture(scope="module")
def fake_cluster(s3_server: Any) -> Iterator[FakeCluster]:
    """The fake cluster, with this process connected to it as the driver.

    Storage keys and a fresh Ray token go into the environment the cluster
    starts with, and into this process's for the driver.
    """
    import ray

    from ray_cluster._internal.ray_runtime import connect_ray
    from ray_cluster.config import ClusterSettings, Settings

    env = {
        "MEDRAY_STORAGE__ACCESS_KEY": s3_server.access_key,
        "MEDRAY_STORAGE__SECRET_KEY": s3_server.secret_key,
        "MEDRAY_TORCH_THREADS": "1",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    saved = dict(os.environ)
    cluster = FakeCluster(fake_cluster_config())
    os.environ.update({k: v for k, v in env.items() if k.startswith("RAY_AUTH")})
    try:
        cluster.start_with(env)
        connect_ray(Settings(cluster=ClusterSettings(address=GCS_ADDRESS)))
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def tiny_model(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> ModelCard:
    """An untrained reference-architecture model in the registry (fast to run)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    card, weights = make_untrained(
        folder, name="tiny-autoscaler", image_size=32, volume_slices=3
    )
    settings = s3_server.settings
    ModelRegistry(ObjectStore.from_settings(settings.storage), settings).push(
        card, weights
    )
    return card
