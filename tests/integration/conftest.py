"""Fixtures for tests that need a local Ray and a model in the registry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from models import (
    ModelCard,
    get_builder,
    reference_input_spec,
    save_weights,
    sha256_file,
)
from ray_cluster._internal.ray_runtime import loopback_node
from ray_cluster.registry import ModelRegistry
from ray_cluster.storage import ObjectStore

TINY_LABELS = ["ct_axial", "ct_localizer", "mr", "radiograph", "other"]


@pytest.fixture(scope="session")
def ray_local(s3_server: Any) -> Iterator[None]:
    """A local Ray on loopback; credentials reach workers through the node env."""
    import ray

    os.environ["MEDRAY_STORAGE__ACCESS_KEY"] = s3_server.access_key
    os.environ["MEDRAY_STORAGE__SECRET_KEY"] = s3_server.secret_key
    os.environ["MEDRAY_TORCH_THREADS"] = "1"
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
    torch.manual_seed(0)
    model = get_builder("resnet18_1ch")(num_classes=len(TINY_LABELS), in_channels=1)
    folder = tmp_path_factory.mktemp("tiny-model")
    weights = folder / "weights.safetensors"
    save_weights(model.state_dict(), weights)
    spec = reference_input_spec(32)
    spec["volume"] = dict(spec.get("volume", {}), slices=3)
    card = ModelCard(
        name="tiny",
        version="1",
        architecture="resnet18_1ch",
        sha256=sha256_file(weights),
        labels=TINY_LABELS,
        input=spec,
        metrics={},
        split={},
        description="untrained model for tests",
        intended_use="tests only",
        created_by="tests",
    )
    settings = s3_server.settings
    ModelRegistry(ObjectStore.from_settings(settings.storage), settings).push(
        card, weights
    )
    return card


def corpus_dir(shared_data: Path) -> Path:
    """Return the real DICOM corpus folder."""
    return shared_data / "dicom"
