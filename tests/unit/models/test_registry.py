"""Builder registry and loading a model from its card."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models import (
    CardError,
    ModelCard,
    UnknownModelError,
    WeightsChecksumError,
    get_builder,
    list_architectures,
    load_model,
    predict_batch,
    register_model,
    registry,
    resnet18_1ch,
)

CardFactory = Callable[..., ModelCard]


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lets tests register builders without leaking them to other tests."""
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    yield


def _linear(num_classes: int, in_channels: int = 1) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


def test_reference_builder_is_registered() -> None:
    assert "resnet18_1ch" in list_architectures()
    assert get_builder("resnet18_1ch") is resnet18_1ch


def test_register_and_list_are_sorted() -> None:
    register_model("aaa-test")(_linear)

    assert get_builder("aaa-test") is _linear
    assert list_architectures() == sorted(list_architectures())


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(UnknownModelError, match="resnet18_1ch") as info:
        get_builder("resnet50")

    assert info.value.name == "resnet50"
    assert "resnet18_1ch" in info.value.known
    assert isinstance(info.value, KeyError)
    assert "'resnet50'" in str(info.value)


def test_name_taken_by_another_builder_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet18_1ch")(_linear)


def test_registering_the_same_builder_again_is_allowed() -> None:
    register_model("resnet18_1ch")(resnet18_1ch)

    assert get_builder("resnet18_1ch") is resnet18_1ch


@pytest.mark.parametrize("name", ["", "ResNet", "a b", "-x"])
def test_malformed_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="architecture name"):
        register_model(name)


def test_load_model_restores_weights_in_eval_mode(
    tiny_model: nn.Module, saved_model: tuple[ModelCard, Path]
) -> None:
    card, path = saved_model
    x = np.random.default_rng(0).normal(size=(2, 1, 32, 32)).astype(np.float32)

    model = load_model(card, path)

    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    np.testing.assert_array_equal(predict_batch(model, x), predict_batch(tiny_model, x))


def test_load_model_on_each_device(
    saved_model: tuple[ModelCard, Path], device: str
) -> None:
    card, path = saved_model

    model = load_model(card, path, device=device)

    assert next(model.parameters()).device.type == device


def test_load_model_checks_sha256(
    saved_model: tuple[ModelCard, Path], make_card: CardFactory
) -> None:
    _, path = saved_model

    with pytest.raises(WeightsChecksumError):
        load_model(make_card(sha256="1" * 64), path)


def test_load_model_unknown_architecture(
    saved_model: tuple[ModelCard, Path], make_card: CardFactory
) -> None:
    card, path = saved_model

    with pytest.raises(UnknownModelError):
        load_model(make_card(sha256=card.sha256, architecture="vit_tiny"), path)


def test_load_model_card_labels_not_fitting_weights(
    saved_model: tuple[ModelCard, Path], make_card: CardFactory
) -> None:
    card, path = saved_model
    wrong = make_card(sha256=card.sha256, labels=["a", "b"])

    with pytest.raises(CardError, match="does not fit card tiny/1"):
        load_model(wrong, path)


def test_load_model_cuda_falls_back_to_cpu_without_cuda(
    saved_model: tuple[ModelCard, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    card, path = saved_model

    model = load_model(card, path, device="cuda")

    assert next(model.parameters()).device.type == "cpu"
    assert any(r.levelname == "WARNING" for r in caplog.records)
