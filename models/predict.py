"""Inference on prepared arrays: probabilities, series results, devices.

Results that leave the process go through `round_probs`, so recomputing a study
on the same device gives byte-identical JSON even when the last float bits of
a matrix product differ between runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from models.weights import COMBINE_METHODS

__all__ = [
    "combine",
    "predict_batch",
    "resolve_device",
    "round_probs",
    "top_label",
]

logger = logging.getLogger(__name__)

_EPS = 1e-12


def resolve_device(preference: str | torch.device = "auto") -> torch.device:
    """Turns a device preference into a usable device.

    Args:
        preference: "auto" (CUDA when available, else CPU), "cpu", "cuda",
            "cuda:N" or any other name torch accepts.

    Returns:
        The device to use. A CUDA request on a machine without CUDA falls back
        to CPU with a WARNING.

    Raises:
        ValueError: The name is not a device, or names a CUDA index that does
            not exist.
    """
    text = str(preference).strip().lower()
    if text == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        logger.debug("device auto resolved to %s", device)
        return device

    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise ValueError(
            f"unknown device {preference!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from exc

    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        logger.warning("device %s requested but CUDA is not available; using cpu", text)
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(
            f"device {text!r} does not exist; this machine has {count} CUDA "
            f"device(s), cuda:0 to cuda:{count - 1}"
        )
    return device


def _model_device(model: nn.Module) -> torch.device:
    """Returns the device of the model's first parameter (CPU when it has none)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def predict_batch(
    model: nn.Module,
    x: npt.ArrayLike,
    device: str | torch.device | None = None,
    *,
    batch_size: int = 64,
    pad: bool = False,
) -> npt.NDArray[np.float32]:
    """Computes class probabilities for a stack of prepared inputs.

    Args:
        model: A classifier in eval mode (as returned by `load_model`).
        x: Inputs shaped (N, C, H, W), already prepared per the card's input
            block; converted to float32.
        device: Where to run; None keeps the model's device. The model is moved
            there if it is elsewhere.
        batch_size: Inputs per forward pass, to bound memory.
        pad: Pad every forward pass to exactly ``batch_size`` inputs (with
            zeros, whose outputs are dropped). Kernels then see one shape only,
            so an image's probabilities do not depend on which other images
            shared its batch: results are reproducible bit for bit however
            requests were batched.

    Returns:
        Softmax probabilities shaped (N, K), float32, on CPU.

    Raises:
        ValueError: `x` is not 4-D or empty, `batch_size` is not positive, or
            the model is in training mode.
    """
    array = np.ascontiguousarray(x, dtype=np.float32)
    if array.ndim != 4 or array.shape[0] == 0:
        raise ValueError(
            f"expected a non-empty array shaped (N, C, H, W), got {array.shape}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if model.training:
        raise ValueError(
            "model is in training mode; call model.eval() first (load_model does)"
        )

    target = _model_device(model) if device is None else resolve_device(device)
    if _model_device(model) != target:
        model.to(target)

    outputs: list[npt.NDArray[np.float32]] = []
    with torch.inference_mode():
        for start in range(0, array.shape[0], batch_size):
            part = array[start : start + batch_size]
            count = part.shape[0]
            if pad and count < batch_size:
                filler = np.zeros((batch_size - count, *part.shape[1:]), np.float32)
                part = np.concatenate([part, filler])
            chunk = torch.from_numpy(part).to(target)
            logits = model(chunk).float()[:count]
            outputs.append(torch.softmax(logits, dim=1).cpu().numpy())
    return np.concatenate(outputs, axis=0)


def combine(probs: npt.ArrayLike, how: str = "mean") -> npt.NDArray[np.float64]:
    """Combines per-image probabilities into one distribution for the series.

    Args:
        probs: Probabilities shaped (N, K).
        how: "mean" (average), "max" (per-class maximum, renormalized) or
            "geometric_mean" (average of logs, renormalized).

    Returns:
        Probabilities shaped (K,), summing to 1, float64.

    Raises:
        ValueError: `probs` is not a non-empty 2-D array, or `how` is unknown.
    """
    array = np.asarray(probs, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"expected probabilities shaped (N, K), got {array.shape}")

    if how == "mean":
        result = array.mean(axis=0)
    elif how == "max":
        result = array.max(axis=0)
    elif how == "geometric_mean":
        result = np.exp(np.log(np.clip(array, _EPS, None)).mean(axis=0))
    else:
        raise ValueError(
            f"unknown combine method {how!r}; use one of {COMBINE_METHODS}"
        )

    total = float(result.sum())
    if total <= 0:
        return np.full(array.shape[1], 1.0 / array.shape[1])
    return np.asarray(result / total, dtype=np.float64)


def top_label(probs: npt.ArrayLike, labels: Sequence[str]) -> tuple[str, float]:
    """Picks the most probable label (the first one on ties).

    Args:
        probs: Probabilities shaped (K,).
        labels: The K label names, in output order.

    Returns:
        The label and its probability.

    Raises:
        ValueError: The lengths differ or `probs` is not 1-D.
    """
    array = np.asarray(probs, dtype=np.float64)
    if array.ndim != 1 or array.shape[0] != len(labels) or not labels:
        raise ValueError(
            f"expected {len(labels)} probabilities for labels {list(labels)}, "
            f"got shape {array.shape}"
        )
    index = int(np.argmax(array))
    return labels[index], float(array[index])


def round_probs(p: npt.ArrayLike, ndigits: int = 6) -> npt.NDArray[np.float64]:
    """Rounds probabilities so their JSON text is stable across recomputation.

    Args:
        p: Probabilities of any shape.
        ndigits: Decimal digits kept.

    Returns:
        A float64 array of the same shape; `.tolist()` gives JSON-ready floats.
    """
    rounded = np.round(np.asarray(p, dtype=np.float64), ndigits)
    return np.asarray(rounded + 0.0, dtype=np.float64)  # -0.0 becomes 0.0
