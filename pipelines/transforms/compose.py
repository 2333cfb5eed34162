"""Chain transforms, and build model input from a series and a model card.

The model card ``input`` block (see docs/design.md)::

    {"dims": 2, "channels": 1, "size": [128, 128],
     "intensity": {"mode": "percentile", "low": 1.0, "high": 99.0},
     "normalize": {"mean": 0.5, "std": 0.25},
     "volume": {"slices": 5, "sampling": "uniform", "combine": "mean"}}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pipelines.transforms.intensity import Normalize, RgbToGray, ScalePercentile, Window
from pipelines.transforms.spatial import Resize, SampleSlices

if TYPE_CHECKING:
    from pipelines.series import SeriesImage

__all__ = ["Compose", "build_input", "input_transform"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
Transform = Callable[[FloatArray], FloatArray]

_INPUT_KEYS = frozenset(
    {"dims", "channels", "size", "intensity", "normalize", "volume"}
)


class Compose:
    """Apply transforms one after the other.

    Args:
        transforms: Callables taking and returning an array.
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, data: FloatArray) -> FloatArray:
        for transform in self.transforms:
            data = transform(data)
        return data

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


def _intensity(spec: Mapping[str, Any]) -> Transform:
    mode = spec.get("mode", "percentile")
    if mode == "percentile":
        return ScalePercentile(
            float(spec.get("low", 1.0)), float(spec.get("high", 99.0))
        )
    if mode == "window":
        try:
            return Window(float(spec["center"]), float(spec["width"]))
        except KeyError as exc:
            raise ValueError(
                "input.intensity mode 'window' needs 'center' and 'width'"
            ) from exc
    raise ValueError(
        f"input.intensity.mode must be 'percentile' or 'window', got {mode!r}"
    )


def input_transform(spec: Mapping[str, Any]) -> Compose:
    """Build the per-image transform (intensity, normalize, resize) of a card.

    Args:
        spec: The model card ``input`` block.

    Returns:
        A transform for one ``(H, W)`` image.

    Raises:
        ValueError: The block is malformed.
    """
    unknown = set(spec) - _INPUT_KEYS
    if unknown:
        raise ValueError(f"unknown model card input keys: {sorted(unknown)}")
    size = spec.get("size")
    if not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(f"input.size must be [height, width], got {size!r}")
    steps: list[Transform] = [_intensity(spec.get("intensity") or {})]
    normalize = spec.get("normalize")
    if normalize:
        steps.append(Normalize(float(normalize["mean"]), float(normalize["std"])))
    steps.append(Resize((int(size[0]), int(size[1]))))
    return Compose(steps)


def build_input(series: SeriesImage, spec: Mapping[str, Any]) -> FloatArray:
    """Turn a series into model input following the model card ``input`` block.

    A volume contributes ``volume.slices`` slices sampled evenly along Z of its
    first time point (all slices when there is no ``volume`` block); a 2D set
    contributes each of its images. Intensity scaling is done per image
    (percentile or HU window), then ``normalize``, then resizing. RGB images
    become luminance for 1-channel models; grayscale is repeated for 3-channel
    models.

    Args:
        series: A ``volume`` or ``2d`` series from ``assemble_study``.
        spec: The model card ``input`` block.

    Returns:
        float32 ``(N, C, H, W)``.

    Raises:
        ValueError: The series is skipped, or the block is malformed/unsupported.
    """
    dims = int(spec.get("dims", 2))
    channels = int(spec.get("channels", 1))
    if dims != 2:
        raise ValueError(f"input.dims={dims} is not supported (only 2)")
    if channels not in (1, 3):
        raise ValueError(f"input.channels must be 1 or 3, got {channels}")
    per_image = input_transform(spec)

    if series.kind == "volume":
        images = series.array[0]
        volume = spec.get("volume") or {}
        slices = volume.get("slices")
        sampling = volume.get("sampling", "uniform")
        if sampling != "uniform":
            raise ValueError(f"input.volume.sampling {sampling!r} is not supported")
        if slices:
            images = SampleSlices(int(slices))(images)
    elif series.kind == "2d":
        images = series.array
    else:
        raise ValueError(
            f"series {series.report.series_uid} was skipped "
            f"({series.report.skip_code}); it has no pixels to feed a model"
        )

    rgb = images.ndim == 4
    if rgb and channels == 1:
        images = RgbToGray()(images)
        rgb = False
    outputs = []
    for image in images:
        if rgb:
            planes = [per_image(image[..., c]) for c in range(3)]
            outputs.append(np.stack(planes))
        else:
            plane = per_image(image)
            outputs.append(np.repeat(plane[np.newaxis], channels, axis=0))
    return np.ascontiguousarray(np.stack(outputs), dtype=np.float32)
