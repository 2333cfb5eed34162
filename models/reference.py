"""The reference architecture: a ResNet-18 for single-channel images.

No pretrained weights are used or downloaded; the reference model is trained
from scratch by `models.train.train_reference`.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18

from models.registry import register_model

__all__ = ["resnet18_1ch"]


@register_model("resnet18_1ch")
def resnet18_1ch(num_classes: int = 5, in_channels: int = 1) -> nn.Module:
    """Builds torchvision's ResNet-18 with its first convolution and its
    classifier sized for grey-level images and our labels.

    Args:
        num_classes: Number of outputs.
        in_channels: Channels of one input; 1 for grey-level images.

    Returns:
        An untrained ResNet-18.

    Raises:
        ValueError: A count is not positive.
    """
    if num_classes < 1 or in_channels < 1:
        raise ValueError(
            f"num_classes and in_channels must be positive, got {num_classes} "
            f"and {in_channels}"
        )

    model: nn.Module = resnet18(weights=None, num_classes=num_classes)
    stem = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
    model.conv1 = stem
    return model
