"""Spatial transforms in plain numpy: resize, slice sampling, resampling.

Resizing works on the last two axes (rows, columns). Enlarging uses linear
interpolation between pixel centres; shrinking averages the covered area, so
large radiographs do not alias when reduced to model size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Resize", "SampleSlices", "resample_to_spacing", "resize_axis"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


def _linear_axis(data: FloatArray, size: int, axis: int) -> FloatArray:
    n = data.shape[axis]
    src = (np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5
    src = np.clip(src, 0.0, n - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    shape = [1] * data.ndim
    shape[axis] = size
    weight = (src - lo).astype(np.float32).reshape(shape)
    a = np.take(data, lo, axis=axis)
    b = np.take(data, hi, axis=axis)
    result: FloatArray = (a * (1.0 - weight) + b * weight).astype(np.float32)
    return result


def _area_axis(data: FloatArray, size: int, axis: int) -> FloatArray:
    n = data.shape[axis]
    moved = np.moveaxis(data.astype(np.float64, copy=False), axis, 0)
    cumulative = np.concatenate([np.zeros((1, *moved.shape[1:])), np.cumsum(moved, 0)])
    edges = np.arange(size + 1, dtype=np.float64) * (n / size)
    whole = np.minimum(np.floor(edges).astype(np.intp), n)
    frac = edges - whole
    tail = np.take(moved, np.minimum(whole, n - 1), axis=0)
    frac_shape = (size + 1,) + (1,) * (moved.ndim - 1)
    integral = cumulative[whole] + tail * frac.reshape(frac_shape)
    out = (integral[1:] - integral[:-1]) / (n / size)
    result: FloatArray = np.moveaxis(out, 0, axis).astype(np.float32)
    return result


def resize_axis(data: FloatArray, size: int, axis: int) -> FloatArray:
    """Resize one axis: area average when shrinking, linear when enlarging.

    Args:
        data: Array of any shape.
        size: New length of ``axis`` (>= 1).
        axis: Axis to resize.

    Returns:
        float32 array with ``shape[axis] == size``.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    data = np.asarray(data, dtype=np.float32)
    n = data.shape[axis]
    if n == size:
        return data
    if size < n:
        return _area_axis(data, size, axis)
    return _linear_axis(data, size, axis)


class Resize:
    """Resize the last two axes to ``size`` = (rows, columns).

    Args:
        size: Output (height, width), or one int for a square.
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        if isinstance(size, int):
            size = (size, size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"Resize size must be two positive ints, got {size!r}")
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, image: FloatArray) -> FloatArray:
        data = np.asarray(image, dtype=np.float32)
        if data.ndim < 2:
            raise ValueError(f"Resize needs at least 2 axes, got shape {data.shape}")
        data = resize_axis(data, self.size[0], data.ndim - 2)
        return resize_axis(data, self.size[1], data.ndim - 1)

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


class SampleSlices:
    """Pick ``n`` slices evenly along the first axis (ends included).

    With fewer than ``n`` slices some are repeated so that ``n`` come out.

    Args:
        n: Number of slices (>= 1).
    """

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"SampleSlices n must be >= 1, got {n!r}")
        self.n = int(n)

    def indices(self, count: int) -> npt.NDArray[np.intp]:
        """Return the indices picked from ``count`` slices."""
        if count < 1:
            raise ValueError("SampleSlices needs at least one slice")
        if self.n == 1:
            return np.array([count // 2], dtype=np.intp)
        return np.rint(np.linspace(0, count - 1, self.n)).astype(np.intp)

    def __call__(self, volume: FloatArray) -> FloatArray:
        data = np.asarray(volume, dtype=np.float32)
        return data[self.indices(data.shape[0])]

    def __repr__(self) -> str:
        return f"SampleSlices(n={self.n})"


def resample_to_spacing(
    volume: FloatArray,
    spacing_mm: Sequence[float],
    target_mm: Sequence[float],
) -> FloatArray:
    """Resample a ``(..., Z, Y, X)`` volume to a new voxel spacing.

    Args:
        volume: Array whose last three axes are Z, Y, X.
        spacing_mm: Current (x, y, z) spacing, as in ``SeriesReport.spacing_mm``.
        target_mm: Wanted (x, y, z) spacing.

    Returns:
        float32 volume covering the same extent at (about) the target spacing.
    """
    data = np.asarray(volume, dtype=np.float32)
    if data.ndim < 3:
        raise ValueError(f"resample_to_spacing needs Z, Y, X axes, got {data.shape}")
    if min(target_mm) <= 0 or min(spacing_mm) <= 0:
        raise ValueError("spacings must be positive")
    for axis, (now, want) in zip(
        (-1, -2, -3), zip(spacing_mm, target_mm, strict=True), strict=True
    ):
        n = data.shape[axis]
        size = max(1, round(n * now / want))
        data = resize_axis(data, size, data.ndim + axis)
    return data
