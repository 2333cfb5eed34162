"""Untrained models with a valid card, for tests, benchmarks and smoke runs.

Throughput and latency do not depend on the weights, and neither do the
mechanics of a job; these models exercise every path (registry, checksum,
loading, batching) without training first.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.registry import get_builder
from models.train import REFERENCE_ARCHITECTURE, REFERENCE_LABELS, reference_input_spec
from models.weights import ModelCard, save_weights

__all__ = ["make_untrained"]


def make_untrained(
    folder: Path,
    *,
    name: str,
    image_size: int = 64,
    volume_slices: int | None = None,
    purpose: str = "tests only",
    seed: int = 0,
) -> tuple[ModelCard, Path]:
    """Write randomly initialised reference-architecture weights and their card.

    Args:
        folder: Where ``weights.safetensors`` is written (created).
        name: The card's model name.
        image_size: Input height and width in the card's input block.
        volume_slices: Slices sampled per volume; the reference default if None.
        purpose: The card's intended use (it is never a clinical model).
        seed: Seeds the initialisation, so the sha256 is stable.

    Returns:
        The card and the weights path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        builder = get_builder(REFERENCE_ARCHITECTURE)
        model = builder(num_classes=len(REFERENCE_LABELS), in_channels=1)
    finally:
        torch.random.set_rng_state(generator_state)
    weights = folder / "weights.safetensors"
    sha256 = save_weights(model.state_dict(), weights)
    spec = reference_input_spec(image_size)
    if volume_slices is not None:
        spec["volume"] = dict(spec.get("volume", {}), slices=volume_slices)
    card = ModelCard(
        name=name,
        version="1",
        architecture=REFERENCE_ARCHITECTURE,
        sha256=sha256,
        labels=list(REFERENCE_LABELS),
        input=spec,
        metrics={},
        split={},
        description="untrained weights: outputs carry no meaning",
        intended_use=purpose,
        created_by="models.untrained",
    )
    return card, weights
