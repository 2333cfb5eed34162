"""Registry of model builders, and loading a model from its card.

A builder is a function `(num_classes, in_channels) -> nn.Module` registered
under an architecture name; a card's `architecture` field names it. Builders
create untrained modules: weights always come from a file pinned by its card.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Protocol, TypeVar

import torch
from torch import nn

from models.errors import CardError, UnknownModelError
from models.predict import resolve_device
from models.weights import ModelCard, load_weights

__all__ = [
    "ModelBuilder",
    "get_builder",
    "list_architectures",
    "load_model",
    "register_model",
]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class ModelBuilder(Protocol):
    """Creates an untrained classifier."""

    def __call__(self, num_classes: int, in_channels: int) -> nn.Module:
        """Builds the module.

        Args:
            num_classes: Number of outputs (the card's labels).
            in_channels: Channels of one input (the card's `input.channels`).

        Returns:
            The module, with freshly initialized parameters.
        """
        ...


_BUILDERS: dict[str, ModelBuilder] = {}

_B = TypeVar("_B", bound=ModelBuilder)


def register_model(name: str) -> Callable[[_B], _B]:
    """Registers a builder under an architecture name.

    Use as a decorator: `@register_model("resnet18_1ch")`.

    Args:
        name: Architecture name: lower case letters, digits, `_`, `.`, `-`.

    Returns:
        A decorator that registers the builder and returns it unchanged.

    Raises:
        ValueError: The name is malformed, or already taken by another builder.
    """
    if not _NAME.match(name):
        raise ValueError(
            f"architecture name {name!r} must be lower case letters, digits, "
            "'_', '.' or '-'"
        )

    def decorator(builder: _B) -> _B:
        existing = _BUILDERS.get(name)
        if existing is not None and _qualname(existing) != _qualname(builder):
            raise ValueError(
                f"architecture {name!r} is already registered by "
                f"{_qualname(existing)}; pick another name"
            )
        _BUILDERS[name] = builder
        return builder

    return decorator


def _qualname(builder: ModelBuilder) -> str:
    """Names a builder by module and qualified name (stable across reloads)."""
    module = getattr(builder, "__module__", "?")
    return f"{module}.{getattr(builder, '__qualname__', repr(builder))}"


def get_builder(name: str) -> ModelBuilder:
    """Looks up a registered builder.

    Args:
        name: The architecture name.

    Returns:
        The builder.

    Raises:
        UnknownModelError: No builder has this name; the message lists the
            known ones.
    """
    try:
        return _BUILDERS[name]
    except KeyError:
        known = tuple(list_architectures())
        raise UnknownModelError(
            f"unknown architecture {name!r}; known: {', '.join(known) or 'none'}",
            name=name,
            known=known,
        ) from None


def list_architectures() -> list[str]:
    """Returns the registered architecture names, sorted."""
    return sorted(_BUILDERS)


def load_model(
    card: ModelCard,
    weights_path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Builds the card's architecture and loads its checked weights.

    Args:
        card: The model card.
        weights_path: The weights file the card describes.
        device: Where to put the model; see `resolve_device`.

    Returns:
        The model in eval mode, gradients off, on the resolved device.

    Raises:
        UnknownModelError: The card's architecture is not registered.
        WeightsChecksumError: The file's sha256 differs from the card's.
        CardError: The weights do not fit the architecture, labels or channels
            the card declares.
    """
    builder = get_builder(card.architecture)
    state = load_weights(weights_path, card.sha256)
    model = builder(num_classes=len(card.labels), in_channels=card.input["channels"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CardError(
            f"weights file {os.fspath(weights_path)} does not fit card "
            f"{card.name}/{card.version} (architecture {card.architecture}, "
            f"{len(card.labels)} labels, {card.input['channels']} channel(s)): "
            f"{exc}",
            name=card.name,
        ) from exc

    target = resolve_device(device)
    model.to(target)
    model.eval()
    model.requires_grad_(False)
    logger.info(
        "loaded model %s/%s (%s, sha256 %s) on %s",
        card.name,
        card.version,
        card.architecture,
        card.sha256[:12],
        target,
    )
    return model
