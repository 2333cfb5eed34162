"""Fixtures shared by the model tests."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from models import ModelCard, reference_input_spec, resnet18_1ch, save_weights

LABELS = ["ct_axial", "ct_localizer", "mr"]

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, requires_cuda]),
]
"""Device parameters: `cpu` always, `cuda` marked `gpu` and skipped without CUDA."""


def _make_card(sha256: str = "0" * 64, **changes: object) -> ModelCard:
    """A valid card for a 3-label ResNet at 32x32, with `changes` applied."""
    fields: dict[str, object] = {
        "name": "tiny",
        "version": "1",
        "architecture": "resnet18_1ch",
        "sha256": sha256,
        "labels": list(LABELS),
        "input": reference_input_spec(32),
        "metrics": {"eval_accuracy": 0.5},
        "split": {"method": "by_study", "eval": {"study_keys": ["ab12"]}},
        "description": "test card",
        "intended_use": "tests only",
        "created_by": "tests",
    }
    fields.update(changes)
    return ModelCard.model_validate(fields)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Each device name the tests run on."""
    return str(request.param)


@pytest.fixture
def make_card() -> Callable[..., ModelCard]:
    """Factory of valid cards: `make_card(sha256=..., field=value, ...)`."""
    return _make_card


def _build_tiny_model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = resnet18_1ch(num_classes=len(LABELS))
    return model.eval()


@pytest.fixture
def tiny_model() -> nn.Module:
    """An untrained 3-label ResNet in eval mode, seeded (the same each time)."""
    return _build_tiny_model()


@pytest.fixture(scope="session")
def saved_model(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ModelCard, Path]:
    """`tiny_model`'s weights written to a file, with the card that pins them.

    Shared by the session: tests must not modify the file.
    """
    path = tmp_path_factory.mktemp("tiny") / "weights.safetensors"
    digest = save_weights(_build_tiny_model().state_dict(), path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    return _make_card(sha256=digest), path
