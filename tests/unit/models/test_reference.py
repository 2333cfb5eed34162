"""The reference ResNet-18 builder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import resnet18_1ch


def test_forward_shape_single_channel() -> None:
    model = resnet18_1ch(num_classes=5).eval()

    with torch.inference_mode():
        out = model(torch.zeros(3, 1, 64, 64))

    assert out.shape == (3, 5)


def test_stem_and_head_follow_arguments() -> None:
    model = resnet18_1ch(num_classes=2, in_channels=3)

    stem, head = model.get_submodule("conv1"), model.get_submodule("fc")

    assert isinstance(stem, nn.Conv2d) and stem.in_channels == 3
    assert isinstance(head, nn.Linear) and head.out_features == 2


def test_same_seed_same_initialization() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        first = resnet18_1ch(num_classes=3).state_dict()
        torch.manual_seed(7)
        second = resnet18_1ch(num_classes=3).state_dict()

    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize(("num_classes", "in_channels"), [(0, 1), (3, 0)])
def test_counts_must_be_positive(num_classes: int, in_channels: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        resnet18_1ch(num_classes=num_classes, in_channels=in_channels)
