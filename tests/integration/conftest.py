"""Fixtures for tests that need a local Ray and a model in the registry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models import (
    ModelCard,
    make_untrained,
)
from ray_cluster._internal.ray_runtime import loopback_node
from ray_cluster.registry import ModelRegistry
from ray_cluster.storage import ObjectStore


@pytest.fixture(scope="session")
def ray_local(s3_server: Any) -> Iterator[None]:
    """A local Ray on loopback; credentials reach workers through the node env."""
    import ray

    os.environ["MEDRAY_STORAGE__ACCESS_KEY"] = s3_server.access_key
    os.environ["MEDRAY_STORAGE__SECRET_KEY"] = s3_server.secret_key
    os.environ["MEDRAY_TORCH_THREADS"] = "1"
    if ray.is_initialized():  # a test that started its own Ray left it up
        ray.shutdown()
    with loopback_node():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=256 * 1024 * 1024,
            log_to_driver=False,
        )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> ModelCard:
    """An untrained reference-architecture model in the registry (fast to run)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    card, weights = make_untrained(folder, name="tiny", image_size=32, volume_slices=3)
    settings = s3_server.settings
    ModelRegistry(ObjectStore.from_settings(settings.storage), settings).push(
        card, weights
    )
    return card


def corpus_dir(shared_data: Path) -> Path:
    """Return the real DICOM corpus folder."""
    return shared_data / "dicom"
