"""Transforms and build_input."""

from __future__ import annotations

import numpy as np
import pytest
from pipelines_synth import ct_slice, dx_image, to_bytes

from pipelines import (
    Compose,
    Normalize,
    Resize,
    SampleSlices,
    ScalePercentile,
    Window,
    assemble_study,
    build_input,
    resample_to_spacing,
)
from pipelines.transforms import RgbToGray

CARD_INPUT = {
    "dims": 2,
    "channels": 1,
    "size": [16, 16],
    "intensity": {"mode": "percentile", "low": 1.0, "high": 99.0},
    "normalize": {"mean": 0.5, "std": 0.25},
    "volume": {"slices": 5, "sampling": "uniform", "combine": "mean"},
}


def test_window_clips_and_scales() -> None:
    out = Window(40, 400)(np.array([-1000, -160, 40, 240, 3000], np.float32))
    assert out.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError):
        Window(0, 0)


def test_scale_percentile_and_constant_image() -> None:
    data = np.arange(101, dtype=np.float32)
    out = ScalePercentile(0, 100)(data)
    assert out[0] == 0.0 and out[-1] == 1.0 and out[50] == pytest.approx(0.5)
    assert ScalePercentile()(np.full((4, 4), 7, np.float32)).max() == 0.0


def test_normalize() -> None:
    assert Normalize(0.5, 0.25)(np.array([0.5, 1.0], np.float32)).tolist() == [0, 2]


def test_resize_up_linear_and_down_area() -> None:
    ramp = np.tile(np.arange(4, dtype=np.float32), (4, 1))
    up = Resize((4, 8))(ramp)
    assert up.shape == (4, 8)
    assert np.all(np.diff(up[0]) >= 0) and up[0, 0] == 0 and up[0, -1] == 3

    checker = np.indices((64, 64)).sum(axis=0) % 2 * 2.0
    down = Resize(8)(checker.astype(np.float32))
    np.testing.assert_allclose(down, 1.0)  # area average, no aliasing

    stack = np.ones((3, 10, 20), np.float32)
    assert Resize((5, 7))(stack).shape == (3, 5, 7)


def test_sample_slices_even_with_ends() -> None:
    volume = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2))
    assert SampleSlices(5)(volume)[:, 0, 0].tolist() == [0, 2, 4, 7, 9]
    assert SampleSlices(4)(volume[:2])[:, 0, 0].tolist() == [0, 0, 1, 1]


def test_compose_and_rgb_to_gray() -> None:
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[..., 1] = 100
    gray = RgbToGray()(rgb)
    assert gray.shape == (2, 2) and gray[0, 0] == pytest.approx(58.7)
    chain = Compose([Window(50, 100), Normalize(0.5, 0.5)])
    assert chain(np.array([0, 50, 100], np.float32)).tolist() == [-1, 0, 1]


def test_resample_to_spacing() -> None:
    volume = np.ones((10, 20, 30), np.float32)
    out = resample_to_spacing(volume, (0.5, 0.5, 2.0), (1.0, 1.0, 1.0))
    assert out.shape == (20, 10, 15)
    np.testing.assert_allclose(out, 1.0)


def test_build_input_volume() -> None:
    objects = [
        (str(z), to_bytes(ct_slice(z, np.full((8, 8), 1000 + 10 * z, np.uint16))))
        for z in range(9)
    ]
    (series,) = assemble_study(objects).series

    x = build_input(series, CARD_INPUT)

    assert x.shape == (5, 1, 16, 16) and x.dtype == np.float32

    window = {**CARD_INPUT, "intensity": {"mode": "window", "center": 0, "width": 200}}
    x = build_input(series, {**window, "normalize": None})
    # slices 0, 2, 4, 6, 8 -> HU -24, -4, 16, 36, 56 -> window [-100, 100]
    assert x[:, 0, 0, 0] == pytest.approx([0.38, 0.48, 0.58, 0.68, 0.78])


def test_build_input_rgb_2d_and_three_channels() -> None:
    ds = dx_image(np.zeros((6, 10), np.uint8))
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    pixels = np.zeros((6, 10, 3), np.uint8)
    pixels[..., 0] = np.arange(10, dtype=np.uint8) * 20
    ds.PixelData = pixels.tobytes()
    (series,) = assemble_study([("rgb", to_bytes(ds))]).series
    assert series.is_rgb and series.array.shape == (1, 6, 10, 3)

    gray = build_input(series, CARD_INPUT)
    color = build_input(series, {**CARD_INPUT, "channels": 3})

    assert gray.shape == (1, 1, 16, 16)
    assert color.shape == (1, 3, 16, 16)


def test_build_input_rejects_bad_spec() -> None:
    (series,) = assemble_study([("a", to_bytes(ct_slice(0)))]).series
    with pytest.raises(ValueError, match="dims"):
        build_input(series, {**CARD_INPUT, "dims": 3})
    with pytest.raises(ValueError, match="unknown"):
        build_input(series, {**CARD_INPUT, "colour": 1})
    with pytest.raises(ValueError, match="window"):
        build_input(series, {**CARD_INPUT, "intensity": {"mode": "window"}})
