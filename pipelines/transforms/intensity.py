"""Intensity transforms: parameters in ``__init__``, data in ``__call__``.

All transforms take and return float32 arrays of any shape unless stated.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

__all__ = ["Normalize", "RgbToGray", "ScalePercentile", "Window"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

# ITU-R BT.601 luma weights.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class Window:
    """Clip to a window (e.g. HU) and scale it to [0, 1].

    Args:
        center: Window centre, in the units of the data.
        width: Window width (> 0).
    """

    def __init__(self, center: float, width: float) -> None:
        if width <= 0:
            raise ValueError(f"Window width must be > 0, got {width!r}")
        self.center = float(center)
        self.width = float(width)

    def __call__(self, image: FloatArray) -> FloatArray:
        low = self.center - self.width / 2.0
        out = (np.asarray(image, dtype=np.float32) - np.float32(low)) / np.float32(
            self.width
        )
        result: FloatArray = np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
        return result

    def __repr__(self) -> str:
        return f"Window(center={self.center}, width={self.width})"


class ScalePercentile:
    """Map the ``low``..``high`` percentiles of the image to [0, 1], clipped.

    A constant image becomes all zeros.

    Args:
        low: Lower percentile in [0, 100).
        high: Upper percentile in (low, 100].
    """

    def __init__(self, low: float = 1.0, high: float = 99.0) -> None:
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(
                f"ScalePercentile needs 0 <= low < high <= 100, got {low!r}, {high!r}"
            )
        self.low = float(low)
        self.high = float(high)

    def __call__(self, image: FloatArray) -> FloatArray:
        data = np.asarray(image, dtype=np.float32)
        lo, hi = np.percentile(data, [self.low, self.high])
        if not hi > lo:
            return np.zeros_like(data)
        out = (data - np.float32(lo)) / np.float32(hi - lo)
        result: FloatArray = np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
        return result

    def __repr__(self) -> str:
        return f"ScalePercentile(low={self.low}, high={self.high})"


class Normalize:
    """Subtract ``mean`` and divide by ``std``.

    Args:
        mean: Value subtracted.
        std: Divisor (> 0).
    """

    def __init__(self, mean: float, std: float) -> None:
        if std <= 0:
            raise ValueError(f"Normalize std must be > 0, got {std!r}")
        self.mean = float(mean)
        self.std = float(std)

    def __call__(self, image: FloatArray) -> FloatArray:
        data = np.asarray(image, dtype=np.float32)
        return ((data - np.float32(self.mean)) / np.float32(self.std)).astype(
            np.float32, copy=False
        )

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class RgbToGray:
    """Turn ``(..., 3)`` RGB into luminance ``(...)`` (BT.601 weights)."""

    def __call__(self, image: FloatArray) -> FloatArray:
        data = np.asarray(image, dtype=np.float32)
        if data.shape[-1] != 3:
            raise ValueError(f"RgbToGray needs a last axis of 3, got {data.shape}")
        return (data @ _LUMA).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return "RgbToGray()"
