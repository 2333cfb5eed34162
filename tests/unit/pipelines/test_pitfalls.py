"""One test per pitfall of ``shared/data/pitfalls`` plus a synthetic variant.

Each case asserts values (order, spacing, HU, inversion), not just "it ran".
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pydicom
import pytest
from pipelines_synth import (
    SERIES_UID,
    ct_slice,
    dx_image,
    encapsulated,
    enhanced_ct,
    to_bytes,
)
from pydicom.uid import (
    MPEG2MPML,
    JPEG2000Lossless,
    RLELossless,
)

from pipelines import (
    NeedMoreBytes,
    TruncatedError,
    assemble_study,
    decode_instance,
    parse_header,
    read_instance,
)
from pipelines import pixels as pixels_module

Objects = list[tuple[str, bytes]]
Loader = Callable[[str], Objects]


def _only_volume(objects: Objects):  # type: ignore[no-untyped-def]
    study = assemble_study(objects)
    volumes = [s for s in study.series if s.kind == "volume"]
    assert len(volumes) == 1, study.to_dict()
    return study, volumes[0]


def _z(report_affine: list[list[float]], k: int) -> float:
    affine = np.array(report_affine)
    return float((affine @ np.array([0, 0, k, 1]))[2])


# -- P01: order by position, never InstanceNumber or names


def test_p01_slices_sorted_by_position(pitfall: Loader) -> None:
    objects = pitfall("p01_instance_number_vs_position")
    _, volume = _only_volume(objects)

    assert volume.array.shape == (1, 8, 64, 64)
    assert [_z(volume.report.affine, k) for k in range(8)] == [
        0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0,
    ]  # fmt: skip
    by_z = {}
    for key, data in objects:
        ds = read_instance(data, key=key)
        by_z[float(ds.ImagePositionPatient[2])] = decode_instance(ds, key=key).array[0]
    for k, z in enumerate(sorted(by_z)):
        np.testing.assert_array_equal(volume.array[0, k], by_z[z])


def test_p01_synthetic_shuffled_numbers_and_names() -> None:
    zs = [12.0, -3.0, 0.0, 9.0, 3.0, 6.0]
    objects = [
        (
            f"z{9 - i}.dcm",
            to_bytes(
                ct_slice(
                    z,
                    np.full((8, 8), 1024 + int(z * 10), np.uint16),
                    instance_number=len(zs) - i,
                )
            ),
        )
        for i, z in enumerate(zs)
    ]
    _, volume = _only_volume(objects)

    assert volume.array[0, :, 0, 0].tolist() == [-30.0, 0.0, 30.0, 60.0, 90.0, 120.0]
    assert volume.report.spacing_mm[2] == pytest.approx(3.0)


def test_p01_synthetic_reversed_normal_orders_along_normal() -> None:
    # Row x column cross product points to -z: slices must follow that normal.
    orientation = (1, 0, 0, 0, -1, 0)
    objects = [
        (f"{z}", to_bytes(ct_slice(z, np.full((8, 8), 1024 + int(z), np.uint16),
                                   orientation=orientation)))
        for z in (0.0, 2.0, 4.0)
    ]  # fmt: skip
    _, volume = _only_volume(objects)

    assert volume.array[0, :, 0, 0].tolist() == [4.0, 2.0, 0.0]
    affine = np.array(volume.report.affine)
    assert affine[2, 2] == pytest.approx(-2.0)


# -- P02: spacing from positions, not SliceThickness


def test_p02_spacing_from_positions(pitfall: Loader) -> None:
    objects = pitfall("p02_thickness_not_spacing")
    assert float(pydicom.dcmread(io.BytesIO(objects[0][1])).SliceThickness) == 5.0

    _, volume = _only_volume(objects)

    assert volume.report.spacing_mm == pytest.approx((2.5, 2.5, 2.5))
    assert volume.array.shape == (1, 8, 64, 64)
    assert volume.report.warnings == []


def test_p02_synthetic_thickness_and_gap_reported() -> None:
    zs = [0.0, 1.25, 2.5, 3.75, 6.25]  # one slice missing at 5.0
    objects = [(str(z), to_bytes(ct_slice(z, thickness=10.0))) for z in zs]

    _, volume = _only_volume(objects)

    assert volume.report.spacing_mm[2] == pytest.approx(1.25)
    assert "slice_gap" in volume.report.warnings
    assert "uneven_spacing" in volume.report.warnings


def test_p02_synthetic_gantry_tilt_reported() -> None:
    objects = [
        (str(k), to_bytes(ct_slice(0, position=(0, 0.5 * k, 2.0 * k))))
        for k in range(4)
    ]
    _, volume = _only_volume(objects)

    assert "gantry_tilt" in volume.report.warnings
    assert np.array(volume.report.affine)[:3, 2] == pytest.approx([0, 0.5, 2.0])


# -- P04: per-instance rescale


def test_p04_identical_hu_across_rescales(pitfall: Loader) -> None:
    objects = pitfall("p04_per_slice_rescale")
    slopes = {float(pydicom.dcmread(io.BytesIO(b)).RescaleSlope) for _, b in objects}
    assert slopes == {1.0, 0.5}

    _, volume = _only_volume(objects)

    for k in range(volume.array.shape[1]):
        np.testing.assert_array_equal(volume.array[0, k], volume.array[0, 0])
    assert volume.array.min() == -1000.0 and volume.array.max() == 700.0


def test_p04_synthetic_rescale_per_instance() -> None:
    hu = np.array([[-1000, 0], [40, 1500]], dtype=np.float64)
    a = ((hu + 1024) / 1.0).astype(np.uint16)
    b = ((hu + 1024) / 0.5).astype(np.uint16)
    c = ((hu - 24) / 2.0).astype(np.int16)
    objects = [
        ("a", to_bytes(ct_slice(0, a, slope=1.0))),
        ("b", to_bytes(ct_slice(1, b, slope=0.5, bits_stored=16))),
        ("c", to_bytes(ct_slice(2, c, slope=2.0, intercept=24, bits_stored=16,
                                signed=True))),
    ]  # fmt: skip
    _, volume = _only_volume(objects)

    for k in range(3):
        np.testing.assert_array_equal(volume.array[0, k], hu.astype(np.float32))


# -- P05: MONOCHROME1 inverted


def test_p05_monochrome1_matches_reference(pitfall: Loader) -> None:
    study = assemble_study(pitfall("p05_monochrome1_xray"))
    by_key = {s.report.instances_used[0]: s for s in study.series}

    mono1 = by_key["dx_monochrome1.dcm"]
    mono2 = by_key["dx_monochrome2_reference.dcm"]
    np.testing.assert_array_equal(mono1.array, mono2.array)
    assert "monochrome1_inverted" in mono1.report.warnings
    assert mono1.kind == "2d"


def test_p05_synthetic_inversion_uses_stored_range() -> None:
    stored = np.array([[0, 10], [200, 4095]], dtype=np.uint16)
    ds = dx_image(stored, photometric="MONOCHROME1", bits_stored=12)
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    decoded = decode_instance(read_instance(to_bytes(ds), key="m1"), key="m1")

    rescaled = stored * 2.0 - 100
    expected = (-100 + 4095 * 2 - 100) - rescaled
    np.testing.assert_array_equal(decoded.array[0], expected.astype(np.float32))


# -- P06: mixed pixel representation


def test_p06_mixed_representation_same_hu(pitfall: Loader) -> None:
    objects = pitfall("p06_mixed_pixel_representation")
    reps = {pydicom.dcmread(io.BytesIO(b)).PixelRepresentation for _, b in objects}
    assert reps == {0, 1}

    _, volume = _only_volume(objects)

    for k in range(4):
        np.testing.assert_array_equal(volume.array[0, k], volume.array[0, 0])
    assert volume.array.min() == -1000.0


def test_p06_synthetic_high_bits_masked_and_sign_extended() -> None:
    # 12 bits stored in 16: garbage in the top 4 bits must be ignored, and a
    # signed 12-bit value must be sign-extended from bit 11.
    unsigned = np.array([[0xF000 | 100, 0x0FFF]], dtype=np.uint16)
    signed = np.array([[0x0FFF, 0x0800 | 0xF000]], dtype=np.uint16)
    u = read_instance(to_bytes(ct_slice(0, unsigned, intercept=0)), key="u")
    s_ds = ct_slice(1, signed, intercept=0, signed=True)
    s = read_instance(to_bytes(s_ds), key="s")

    du = decode_instance(u, key="u")
    ds_ = decode_instance(s, key="s")

    assert du.array[0].tolist() == [[100.0, 4095.0]]
    assert ds_.array[0].tolist() == [[-1.0, -2048.0]]


# -- P08: enhanced multi-frame


def test_p08_enhanced_frames_ordered_by_position(pitfall: Loader) -> None:
    objects = pitfall("p08_enhanced_multiframe_unordered")
    _, volume = _only_volume(objects)
    ds = read_instance(objects[0][1], key="e")
    frames = decode_instance(ds, key="e").array
    zs = [
        float(f.PlanePositionSequence[0].ImagePositionPatient[2])
        for f in ds.PerFrameFunctionalGroupsSequence
    ]

    assert volume.array.shape == (1, 5, 64, 64)
    assert volume.report.spacing_mm == pytest.approx((2.5, 2.5, 3.0))
    for k, index in enumerate(np.argsort(zs)):
        np.testing.assert_array_equal(volume.array[0, k], frames[index])
    assert _z(volume.report.affine, 0) == 0.0


def test_p08_synthetic_per_frame_rescale_and_order() -> None:
    ds = enhanced_ct([6.0, 0.0, 3.0], [1000, 1100, 1200], [1.0, 2.0, 0.5])
    _, volume = _only_volume([("e", to_bytes(ds))])

    assert volume.array[0, :, 0, 0].tolist() == [1176.0, -424.0, -24.0]
    assert volume.report.spacing_mm == pytest.approx((0.7, 0.7, 3.0))


# -- P10: localizer inside a series


def test_p10_localizer_excluded(pitfall: Loader) -> None:
    _, volume = _only_volume(pitfall("p10_localizer_in_series"))

    assert volume.array.shape == (1, 6, 64, 64)
    assert volume.report.spacing_mm[2] == pytest.approx(5.0)
    excluded = [e.to_dict() for e in volume.report.instances_excluded]
    assert excluded == [{"key": "IM0001.dcm", "code": "localizer"}]
    assert "IM0001.dcm" not in volume.report.instances_used


def test_p10_synthetic_orientation_outlier_excluded() -> None:
    objects = [(f"ax{z}", to_bytes(ct_slice(z))) for z in (0.0, 1.0, 2.0, 3.0)]
    objects.insert(
        1, ("oblique", to_bytes(ct_slice(0, orientation=(1, 0, 0, 0, 0.8, -0.6))))
    )
    _, volume = _only_volume(objects)

    assert volume.array.shape[1] == 4
    codes = {e.key: e.code for e in volume.report.instances_excluded}
    assert codes == {"oblique": "orientation_differs"}


def test_p10_synthetic_localizer_only_series_is_2d() -> None:
    ds = ct_slice(0, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                  orientation=(0, 1, 0, 0, 0, -1))  # fmt: skip
    study = assemble_study([("scout", to_bytes(ds))])

    (series,) = study.series
    assert series.kind == "2d"
    assert series.report.role == "localizer"


# -- P11: decoders


def test_p11_compressed_decode_like_native(pitfall: Loader) -> None:
    study = assemble_study(pitfall("p11_compressed_needs_decoder"))

    assert study.errors == []
    (volume,) = study.series
    assert volume.array.shape == (1, 2, 64, 64)
    assert set(volume.report.transfer_syntaxes) == {
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.90",
    }
    assert volume.array.min() == -1000.0 and volume.array.max() == 700.0


def test_p11_missing_decoder_is_a_per_object_error(
    pitfall: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pixels_module._decoder_available

    def no_jpeg2000(ts: pydicom.uid.UID) -> tuple[bool, str]:
        if ts == JPEG2000Lossless:
            return False, "pylibjpeg-openjpeg"
        return real(ts)

    monkeypatch.setattr(pixels_module, "_decoder_available", no_jpeg2000)
    study = assemble_study(pitfall("p11_compressed_needs_decoder"))

    assert [(e.key, e.code) for e in study.errors] == [
        ("ct_jpeg2000_lossless.dcm", "decoder_missing")
    ]
    assert study.series[0].report.instances_used == ["ct_deflated_explicit_le.dcm"]


def test_p11_synthetic_unsupported_syntax() -> None:
    data = encapsulated(ct_slice(0), [b"\x00" * 16], MPEG2MPML)
    good = to_bytes(ct_slice(1))
    study = assemble_study([("video", data), ("ok", good)])

    assert [(e.key, e.code) for e in study.errors] == [
        ("video", "unsupported_transfer_syntax")
    ]
    assert study.series[0].report.instances_used == ["ok"]


# -- P12: character sets


def test_p12_charset_problems_never_fail(
    pitfall: Loader, caplog: pytest.LogCaptureFixture
) -> None:
    study = assemble_study(pitfall("p12_character_sets"))

    assert study.errors == []
    (volume,) = study.series
    assert volume.array.shape == (1, 2, 64, 64)
    assert "charset_unknown" in volume.report.warnings
    assert any("charset_unknown" in r.getMessage() for r in caplog.records)


def test_p12_synthetic_bad_charset_and_override() -> None:
    ds = ct_slice(0, extra={"SpecificCharacterSet": "ISO_IR 999"})
    ds.PatientName = "Test"
    data = to_bytes(ds).replace(b"Test", "Тест".encode("iso8859_5"))

    header = parse_header(data, key="k", total_size=len(data))
    assert header.status == "image"
    assert "charset_unknown" in header.warnings
    assert decode_instance(read_instance(data, key="k"), key="k").array.shape == (
        1,
        8,
        8,
    )

    fixed = read_instance(data, key="k", charset="ISO_IR 144")
    assert str(fixed.PatientName) == "Тест"
    with pytest.raises(ValueError, match="defined term"):
        read_instance(data, key="k", charset="cp1251")


# -- P14: no preamble, no file meta


def test_p14_preamble_less_read_and_inferred(pitfall: Loader) -> None:
    objects = pitfall("p14_no_preamble_no_meta")
    key, data = objects[0]
    header = parse_header(data, key=key, total_size=len(data))

    assert header.status == "image"
    assert header.ts_inferred is True
    assert header.transfer_syntax == "1.2.840.10008.1.2"

    _, volume = _only_volume(objects)
    assert volume.array.shape == (1, 3, 64, 64)
    assert volume.report.spacing_mm[2] == pytest.approx(2.5)
    assert "transfer_syntax_inferred" in volume.report.warnings


def test_p14_synthetic_bare_dataset() -> None:
    data = to_bytes(ct_slice(0, np.full((8, 8), 1124, np.uint16)), preamble=False)
    assert data[128:132] != b"DICM"

    ds = read_instance(data, key="bare")
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert decode_instance(ds, key="bare").array.max() == 100.0


# -- P15: truncated objects


def test_p15_truncated_objects_are_errors(pitfall: Loader) -> None:
    study = assemble_study(pitfall("p15_truncated_files"))

    assert study.series == []
    assert sorted((e.key, e.code) for e in study.errors) == [
        ("native_truncated.dcm", "pixel_data_truncated"),
        ("rle_truncated.dcm", "pixel_data_truncated"),
    ]


def test_p15_synthetic_native_cut_never_padded() -> None:
    data = to_bytes(ct_slice(0, np.arange(64, dtype=np.uint16).reshape(8, 8)))
    cut = data[:-10]
    good = [(f"s{z}", to_bytes(ct_slice(z))) for z in (1.0, 2.0)]

    with pytest.raises(TruncatedError) as info:
        decode_instance(read_instance(cut, key="cut"), key="cut")
    assert info.value.code == "pixel_data_truncated"

    study = assemble_study([("cut", cut), *good])
    assert [(e.key, e.code) for e in study.errors] == [("cut", "pixel_data_truncated")]
    assert study.series[0].array.shape == (1, 2, 8, 8)


def test_p15_a_wrong_bits_allocated_is_no_truncation() -> None:
    ds = ct_slice(0, np.full((8, 8), 7, np.uint16))
    ds.BitsAllocated = 13
    data = to_bytes(ds)

    study = assemble_study([("odd", data)])
    assert [(e.key, e.code) for e in study.errors] == [("odd", "bad_bits_allocated")]
    assert "BitsAllocated is 13" in study.errors[0].message


def test_p15_synthetic_encapsulated_cut() -> None:
    frame = b"\x01\x00\x00\x00" + b"\x40\x00\x00\x00" + b"\x00" * 56 + b"\x00" * 64
    data = encapsulated(ct_slice(0), [frame], RLELossless)
    cut = data[:-20]

    with pytest.raises(TruncatedError):
        read_instance(cut, key="cut")


# -- P17: junk in the bucket


def test_p17_junk_skipped_or_reported(pitfall: Loader) -> None:
    study = assemble_study(pitfall("p17_junk_in_bucket"))

    assert sorted((i.key, i.code) for i in study.skipped) == [
        ("._CT000.dcm", "appledouble"),
        ("CT999.dcm", "structured_report"),
        ("DICOMDIR", "dicomdir"),
        ("README.txt", "text_file"),
        ("empty.dcm", "empty_object"),
        ("thumb.jpg", "jpeg_file"),
    ]
    assert [(e.key, e.code) for e in study.errors] == [
        ("partial_upload.dcm.part", "truncated_object")
    ]
    (volume,) = study.series
    assert volume.report.instances_used == ["CT000.dcm", "CT001.dcm", "CT002.dcm"]


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"", "not_dicom", "empty_object"),
        (b"hello, this is a text file\n", "not_dicom", "text_file"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "not_dicom", "jpeg_file"),
        (b"\x00\x05\x16\x07" + b"\x00" * 60, "not_dicom", "appledouble"),
        (b"\x13\x37" * 200, "not_dicom", "unknown_format"),
    ],
)
def test_p17_synthetic_sniffing(data: bytes, status: str, reason: str) -> None:
    header = parse_header(data, key="x", total_size=len(data))
    assert (header.status, header.reason) == (status, reason)


def test_p17_synthetic_partial_upload_is_unreadable() -> None:
    data = to_bytes(ct_slice(0))
    cut = data[:400]
    header = parse_header(cut, key="p", total_size=len(cut))
    assert (header.status, header.reason) == ("unreadable", "truncated_object")


# -- P20: ranged reads from object storage


def test_p20_header_from_ranged_prefix(pitfall: Loader) -> None:
    ((key, data),) = pitfall("p20_stream_from_object_store")

    with pytest.raises(NeedMoreBytes) as info:
        parse_header(data[:512], key=key, total_size=len(data))
    assert info.value.wanted == 64 * 1024

    header = parse_header(data[: info.value.wanted], key=key, total_size=len(data))
    assert (header.status, header.rows, header.columns) == ("image", 256, 256)
    study = assemble_study([(key, data)])
    assert study.series[0].array.shape == (1, 256, 256)


def test_p20_synthetic_every_prefix_length() -> None:
    ds = enhanced_ct([0.0, 1.0], [1, 2], [1.0, 1.0], size=4)
    data = to_bytes(ds)
    for cut in range(0, len(data), 7):
        prefix = data[:cut]
        while True:
            try:
                header = parse_header(prefix, key="k", total_size=len(data))
                break
            except NeedMoreBytes as exc:
                assert exc.wanted > len(prefix)
                prefix = data[: exc.wanted]
        assert header.status == "image"
        assert header.frames == 2
        assert header.series_uid == SERIES_UID
