"""Train the reference classifier from a folder of studies, labels from headers.

Each series is assembled by `pipelines` (the same path as the batch job) and
turned into the model's input; the label comes from the header facts of the
instances used (`models.reference_label`). Training and evaluation are split by
study inside `models.train_reference`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models import (
    ModelCard,
    Sample,
    TrainResult,
    reference_input_spec,
    reference_label,
    save_weights,
    train_reference,
)
from pipelines import (
    InstanceHeader,
    SeriesImage,
    assemble_study,
    build_input,
    study_key,
)
from ray_cluster.sources import LocalStudies, read_local_studies

__all__ = ["TrainedModel", "collect_samples", "train_from_folder"]

logger = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """Weights on disk and the card that describes them."""

    card: ModelCard
    weights_path: Path
    result: TrainResult


def _series_header(
    series: SeriesImage, headers: dict[str, InstanceHeader]
) -> InstanceHeader | None:
    report = series.report.to_dict()
    for key in report.get("instances_used", []) or []:
        name = key if isinstance(key, str) else key.get("key")
        if name in headers:
            return headers[name]
    return None


def collect_samples(
    found: LocalStudies, spec: dict[str, Any], slices_per_volume: int = 12
) -> list[Sample]:
    """Turns every readable series into labelled, prepared images.

    Each image goes through `build_input` with the card's input block, so the
    training images are prepared exactly as the service prepares its inputs;
    only the number of slices sampled from a volume differs.

    Args:
        found: The studies of a folder, from `read_local_studies`.
        spec: The model card `input` block.
        slices_per_volume: Slices sampled evenly along Z of each volume; more
            than the card's `volume.slices` gives more varied training images.

    Returns:
        One sample per image, keyed by study.
    """
    train_spec = dict(spec)
    train_spec["volume"] = dict(spec.get("volume", {}), slices=slices_per_volume)
    samples: list[Sample] = []
    for uid, objects in found.studies.items():
        images = assemble_study(objects)
        for series in images.series:
            if series.kind not in ("volume", "2d"):
                continue
            header = _series_header(series, found.headers)
            if header is None:
                continue
            label = reference_label(
                header.modality, header.image_type, is_volume=series.kind == "volume"
            )
            inputs = build_input(series, train_spec)
            for image in inputs:
                samples.append(
                    Sample(image=image[0], label=label, study_key=study_key(uid))
                )
    logger.info(
        "collected %d samples from %d studies", len(samples), len(found.studies)
    )
    return samples


def train_from_folder(
    folder: Path,
    out_dir: Path,
    *,
    epochs: int = 12,
    image_size: int = 64,
    seed: int = 0,
    name: str = "reference",
    version: str = "1",
    slices_per_volume: int = 12,
) -> TrainedModel:
    """Trains the reference classifier on a folder and writes weights and card.

    Args:
        folder: A folder of DICOM studies; labels come from their headers.
        out_dir: Where `weights.safetensors` and `card.json` are written.
        epochs: Passes over the training side.
        image_size: Height and width of the model input, in pixels.
        seed: Seeds the split and the training.
        name: The card's model name.
        version: The card's model version.
        slices_per_volume: Slices sampled from each volume for training.

    Returns:
        The card, the path of the weights and the full training result.

    Raises:
        ValueError: The folder holds no readable image series, or its studies
            cannot be split (see `models.split_studies`).
    """
    spec = reference_input_spec(image_size)
    samples = collect_samples(read_local_studies(folder), spec, slices_per_volume)
    if not samples:
        raise ValueError(
            f"no readable image series under {folder}; nothing to train on"
        )
    result = train_reference(
        samples,
        epochs=epochs,
        image_size=image_size,
        seed=seed,
        name=name,
        version=version,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / "weights.safetensors"
    save_weights(result.state_dict, weights_path)
    (out_dir / "card.json").write_text(result.card.to_json(), encoding="utf-8")
    return TrainedModel(card=result.card, weights_path=weights_path, result=result)
