"""Transforms for model input: small classes, parameters in ``__init__``."""

from pipelines.transforms.compose import Compose, build_input, input_transform
from pipelines.transforms.intensity import Normalize, RgbToGray, ScalePercentile, Window
from pipelines.transforms.spatial import (
    Resize,
    SampleSlices,
    resample_to_spacing,
    resize_axis,
)

__all__ = [
    "Compose",
    "Normalize",
    "Resize",
    "RgbToGray",
    "SampleSlices",
    "ScalePercentile",
    "Window",
    "build_input",
    "input_transform",
    "resample_to_spacing",
    "resize_axis",
]
