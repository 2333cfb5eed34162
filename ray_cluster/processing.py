"""One study from object bytes to a result, without Ray.

The batch actors, the HTTP service and the one-process benchmark all go through
`prepare_study` (decode, assemble, build model input) and `finish_study` (turn
probabilities into the versioned result), so every path gives the same answer.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch

from models import ModelCard, combine, predict_batch, round_probs
from pipelines import (
    DecodeLimits,
    ObjectIssue,
    SeriesImage,
    StudyImages,
    assemble_study,
    build_input,
    study_key,
)

__all__ = [
    "RESULT_SCHEMA_VERSION",
    "PreparedSeries",
    "PreparedStudy",
    "dumps_result",
    "error_result",
    "finish_study",
    "model_results_prefix",
    "predict_study_images",
    "prepare_images",
    "prepare_study",
    "result_key",
]

logger = logging.getLogger(__name__)

RESULT_SCHEMA_VERSION = "1.0"


@functools.cache
def code_version() -> str:
    """Version of the installed medray (read once: package metadata is on disk)."""
    try:
        return version("medray")
    except PackageNotFoundError:  # pragma: no cover - source tree without install
        return "0+unknown"


@dataclass
class PreparedSeries:
    """One series after decoding: its report and the model input, if any."""

    series_uid: str
    kind: str
    report: dict[str, Any]
    inputs: np.ndarray | None
    warnings: list[str] = field(default_factory=list)


@dataclass
class PreparedStudy:
    """A study ready for inference."""

    study_uid: str
    study_key: str
    series: list[PreparedSeries]
    skipped: list[ObjectIssue]
    errors: list[ObjectIssue]

    def input_count(self) -> int:
        """Return how many images go to the model."""
        return sum(0 if s.inputs is None else len(s.inputs) for s in self.series)


def _prepare_series(series: SeriesImage, spec: dict[str, Any]) -> PreparedSeries:
    report = series.report.to_dict()
    warnings = list(report.get("warnings", []))
    inputs: np.ndarray | None = None
    if series.kind in ("volume", "2d"):
        inputs = build_input(series, spec)
    return PreparedSeries(series.series_uid, series.kind, report, inputs, warnings)


def prepare_study(
    study_uid: str,
    objects: Sequence[tuple[str, bytes]],
    card: ModelCard,
    limits: DecodeLimits | None = None,
) -> PreparedStudy:
    """Decode and assemble a study's objects and build the model's input.

    Bad objects become issues of the study; they never stop the others.

    Args:
        study_uid: StudyInstanceUID the objects belong to.
        objects: ``(object key, bytes)`` of each instance.
        card: Card of the model, whose ``input`` block says how to preprocess.
        limits: Decode limits (decompression-bomb budget).

    Returns:
        The prepared study.
    """
    return prepare_images(study_uid, assemble_study(objects, limits), card)


def prepare_images(
    study_uid: str, images: StudyImages, card: ModelCard
) -> PreparedStudy:
    """Build the model's input of an assembled study (see `prepare_study`)."""
    series = [_prepare_series(s, dict(card.input)) for s in images.series]
    return PreparedStudy(
        study_uid=study_uid,
        study_key=study_key(study_uid),
        series=series,
        skipped=list(images.skipped),
        errors=list(images.errors),
    )


def _issue_dict(issue: ObjectIssue) -> dict[str, str]:
    return {"code": issue.code, "message": issue.message, "key": issue.key}


def _model_dict(card: ModelCard) -> dict[str, str]:
    return {"name": card.name, "version": card.version, "sha256": card.sha256}


def _series_output(probs: np.ndarray | None, card: ModelCard) -> dict[str, Any] | None:
    if probs is None or len(probs) == 0:
        return None
    how = str(card.input.get("volume", {}).get("combine", "mean"))
    combined = round_probs(combine(probs, how))
    best = int(np.argmax(combined))
    return {
        "label": card.labels[best],
        "probabilities": {
            label: float(p) for label, p in zip(card.labels, combined, strict=True)
        },
        "images_used": len(probs),
    }


def finish_study(
    prepared: PreparedStudy,
    probs: Sequence[np.ndarray | None],
    card: ModelCard,
) -> dict[str, Any]:
    """Build the versioned result of a study from per-series probabilities.

    Args:
        prepared: The study from `prepare_study`.
        probs: For each series in order, ``(N, K)`` probabilities or None.
        card: The model's card.

    Returns:
        The result, JSON-ready and deterministic (no timings, no job id).
    """
    series_out = []
    for series, p in zip(prepared.series, probs, strict=True):
        report = dict(series.report)
        series_out.append(
            {
                "series_uid": series.series_uid,
                "kind": series.kind,
                "shape": report.get("shape"),
                "spacing_mm": report.get("spacing_mm"),
                "warnings": series.warnings,
                "report": report,
                "output": _series_output(p, card),
            }
        )
    error = None
    if not any(s["output"] is not None for s in series_out):
        first = prepared.errors[0] if prepared.errors else None
        error = {
            "code": first.code if first else "no_image_series",
            "message": (
                first.message
                if first
                else "the study holds no series a model can read "
                "(see the series reports)"
            ),
            "key": first.key if first else None,
        }
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "study_key": prepared.study_key,
        "study_uid": prepared.study_uid,
        "model": _model_dict(card),
        "medray_version": code_version(),
        "series": series_out,
        "skipped_objects": [_issue_dict(i) for i in prepared.skipped],
        "object_errors": [_issue_dict(i) for i in prepared.errors],
        "error": error,
    }


def error_result(
    study_uid: str, card: ModelCard, code: str, message: str, key: str | None
) -> dict[str, Any]:
    """Build the result of a study that could not be processed at all."""
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "study_key": study_key(study_uid),
        "study_uid": study_uid,
        "model": _model_dict(card),
        "medray_version": code_version(),
        "series": [],
        "skipped_objects": [],
        "object_errors": [],
        "error": {"code": code, "message": message, "key": key},
    }


#: Images per forward pass, padded: results do not depend on batching.
FORWARD_CHUNK = 8


def predict_study_images(
    model: torch.nn.Module, images: np.ndarray, device: torch.device | str
) -> np.ndarray:
    """Return probabilities, computed in padded chunks of `FORWARD_CHUNK`.

    Every path (batch actors, HTTP replicas, the one-process loop) predicts
    through here, so a study gets bit-identical probabilities whichever
    images it was batched with.
    """
    return predict_batch(model, images, device, batch_size=FORWARD_CHUNK, pad=True)


def dumps_result(result: dict[str, Any]) -> bytes:
    """Serialise a result the same way every time (sorted keys, compact)."""
    text = json.dumps(result, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8") + b"\n"


def model_results_prefix(results_prefix: str, card: ModelCard) -> str:
    """Return the key prefix (ending in ``/``) of a model's results."""
    return f"{results_prefix.strip('/')}/{card.name}/{card.sha256[:12]}/"


def result_key(results_prefix: str, card: ModelCard, key_of_study: str) -> str:
    """Return the object key of a study's result for a model."""
    return f"{model_results_prefix(results_prefix, card)}{key_of_study}.json"
