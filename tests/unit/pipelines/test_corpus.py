"""Every folder of ``shared/data/dicom`` comes out as its EXPECTED.md says."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pipelines import StudyImages, assemble_study, build_input

Loader = Callable[[str], list[tuple[str, bytes]]]

_cache: dict[str, StudyImages] = {}


def _study(corpus: Loader, name: str) -> StudyImages:
    if name not in _cache:
        _cache[name] = assemble_study(corpus(name))
    return _cache[name]


def _summary(study: StudyImages) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(s.kind, s.report.role, s.array.shape) for s in study.series]


def test_ct_philips_head_phantom(corpus: Loader) -> None:
    study = _study(corpus, "ct_philips_head_phantom_S21570")

    volumes = [s for s in study.series if s.kind == "volume"]
    (volume,) = volumes
    assert volume.array.shape == (1, 28, 512, 512)
    assert volume.report.spacing_mm == pytest.approx((0.451171875, 0.451171875, 5.0))
    assert volume.report.warnings == []
    (scout,) = [s for s in study.series if s.report.role == "localizer"]
    assert scout.kind == "2d" and scout.array.shape == (1, 256, 512)
    derived = [s for s in study.series if s.report.role == "derived"]
    assert sum(s.array.shape[0] for s in derived) == 6
    assert all(s.kind == "2d" for s in derived)
    assert sorted(i.key for i in study.skipped) == [
        "DIRFILE",
        "S1000/DIRFILE",
        "S2010/DIRFILE",
        "S4010/DIRFILE",
    ]
    assert {i.code for i in study.skipped} == {"dicomdir"}
    assert study.errors == []
    hu = volume.array
    assert -1100 < hu.min() < -900 and hu.max() < 4000


@pytest.mark.parametrize(
    ("name", "shape", "spacing_xy"),
    [
        ("ct_localizer_j2k_lossy_marotech", (1, 716, 512), (0.9765625, 0.9765625)),
        ("ct_single_j2k_elscint", (1, 512, 512), (0.351, 0.351)),
        ("ct_single_jpegls_nearlossless_wg04", (1, 512, 512), (0.661468, 0.661468)),
        ("mr_single_jpeg_lossless_p14_philips", (1, 1024, 1024), (0.195313, 0.195313)),
        ("xr_cr_chest_rg2", (1, 2140, 1760), (0.2, 0.2)),
        ("xr_dx_chest_highdicom", (1, 169, 211), (1.2012, 1.2)),
    ],
)
def test_single_2d_objects(
    corpus: Loader, name: str, shape: tuple[int, ...], spacing_xy: tuple[float, ...]
) -> None:
    study = _study(corpus, name)

    (series,) = study.series
    assert series.kind == "2d"
    assert series.array.shape == shape
    assert series.array.dtype == np.float32
    assert series.report.spacing_mm[:2] == pytest.approx(spacing_xy, rel=1e-3)
    assert np.isfinite(series.array).all()
    assert series.array.std() > 0
    assert study.errors == [] and study.skipped == []


def test_ct_hu_ranges_plausible(corpus: Loader) -> None:
    for name in ("ct_single_j2k_elscint", "ct_single_jpegls_nearlossless_wg04"):
        hu = _study(corpus, name).series[0].array
        # air around the head, and no wrapped-around values
        assert np.percentile(hu, 5) < -900
        assert hu.max() < 4000
    marotech = _study(corpus, "ct_localizer_j2k_lossy_marotech").series[0]
    assert marotech.report.role == "localizer"


def test_mr_enhanced_multiframe_xa10(corpus: Loader) -> None:
    study = _study(corpus, "mr_enhanced_multiframe_siemens_xa10")

    (volume,) = study.series
    assert volume.kind == "volume"
    assert volume.array.shape == (4, 6, 64, 64)
    assert volume.report.spacing_mm == pytest.approx((3.375, 3.375, 2.4), rel=1e-4)
    assert len(volume.report.instances_used) == 4
    # time points differ (fMRI), slices differ
    assert not np.array_equal(volume.array[0], volume.array[1])


def test_mr_ge_epi_fmri_time_series(corpus: Loader) -> None:
    study = _study(corpus, "mr_ge_epi_fmri_nih")

    assert [s.kind for s in study.series] == ["volume", "volume"]
    for series in study.series:
        assert series.array.shape == (10, 15, 64, 64)
        assert series.report.spacing_mm == pytest.approx((3.75, 3.75, 5.0), rel=1e-4)
        assert "duplicate_positions" not in series.report.warnings
        assert series.report.instances_excluded == []
        assert len(series.report.instances_used) == 150


def test_mr_ge_epi_time_order_follows_instance_number(corpus: Loader) -> None:
    objects = corpus("mr_ge_epi_fmri_nih")
    study = _study(corpus, "mr_ge_epi_fmri_nih")
    series = study.series[0]
    used = series.report.instances_used
    # the first time point holds the 15 lowest instance numbers of the series
    import io

    import pydicom

    numbers = {
        key: int(
            pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).InstanceNumber
        )
        for key, data in objects
        if key in set(used)
    }
    first_tp = sorted(numbers.values())[:15]
    assert max(first_tp) < min(sorted(numbers.values())[15:])


def test_mr_siemens_mosaic_unpacked(corpus: Loader) -> None:
    study = _study(corpus, "mr_siemens_epi_mosaic_nih")

    assert len(study.series) == 4
    for series in study.series:
        assert series.kind == "volume"
        assert series.array.shape == (2, 5, 72, 72)
        assert series.report.spacing_mm == pytest.approx((3.0, 3.0, 12.0))
        assert "mosaic_unpacked" in series.report.warnings
        # tile 0 corner moved by (216 - 72) / 2 pixels of 3 mm from the mosaic corner
        affine = np.array(series.report.affine)
        assert affine[:3, 3] == pytest.approx([-324 + 216, -324 + 216, 16.0], abs=1e-3)


def test_mr_siemens_transfer_syntaxes_identical(corpus: Loader) -> None:
    study = _study(corpus, "mr_siemens_transfer_syntaxes")

    assert len(study.series) == 9
    syntaxes = {ts for s in study.series for ts in s.report.transfer_syntaxes}
    assert len(syntaxes) == 7
    reference = study.series[0].array
    for series in study.series:
        assert series.kind == "volume"
        assert series.array.shape == (1, 35, 64, 64)
        assert series.report.spacing_mm == pytest.approx((3.25, 3.25, 3.6), rel=1e-4)
        np.testing.assert_array_equal(series.array, reference)


def test_mosaic_not_unpacked_is_skipped(corpus: Loader) -> None:
    import io

    import pydicom

    key, data = corpus("mr_siemens_epi_mosaic_nih")[0]
    ds = pydicom.dcmread(io.BytesIO(data))
    for tag in [t for t in ds.keys() if t.group in (0x0019, 0x0029)]:
        del ds[tag]
    buffer = io.BytesIO()
    ds.save_as(buffer)

    study = assemble_study([(key, buffer.getvalue())])

    (series,) = study.series
    assert series.kind == "skipped"
    assert series.report.skip_code == "mosaic_not_unpacked"
    assert series.array.size == 0
    with pytest.raises(ValueError, match="skipped"):
        build_input(series, {"size": [8, 8]})


def test_xr_cr_rg3_monochrome1(corpus: Loader) -> None:
    study = _study(corpus, "xr_cr_rg3_monochrome1")

    (series,) = study.series
    assert series.kind == "2d"
    assert series.array.shape == (2, 1760, 1760)
    assert "monochrome1_inverted" in series.report.warnings
    lossless, lossy = series.array
    assert np.abs(lossless - lossy).mean() < 5.0
    # After inversion the spine (centre columns) is bright and the directly
    # exposed air beside the body is dark; collimated borders are bright too.
    spine = lossless[200:1000, 860:960].mean()
    air = lossless[200:1000, 530:570].mean()
    assert spine > air + 300


def test_xr_dx_monochrome1_inverted(corpus: Loader) -> None:
    import io

    import pydicom

    ((key, data),) = corpus("xr_dx_chest_highdicom")
    raw = pydicom.dcmread(io.BytesIO(data)).pixel_array.astype(np.float32)

    (series,) = _study(corpus, "xr_dx_chest_highdicom").series
    np.testing.assert_array_equal(series.array[0], 255.0 - raw)
    assert key in series.report.instances_used
