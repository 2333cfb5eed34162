"""Public API, layering, decode budget and one-bad-object isolation."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from pipelines_synth import ct_slice, to_bytes

import pipelines
from pipelines import (
    DecodeBudgetError,
    DecodeLimits,
    assemble_study,
    decode_instance,
    read_instance,
)


def test_all_is_true() -> None:
    for name in pipelines.__all__:
        assert hasattr(pipelines, name), name
    assert sorted(pipelines.__all__) == sorted(set(pipelines.__all__))


def test_pipelines_imports_no_ray_models_or_torch() -> None:
    code = (
        "import sys, pipelines;"
        "bad = [m for m in ('ray', 'models', 'torch') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_root_logger_has_only_null_handler() -> None:
    import logging

    handlers = logging.getLogger("pipelines").handlers
    assert [type(h) for h in handlers] == [logging.NullHandler]


def test_decode_budget_refuses_before_decoding() -> None:
    data = to_bytes(ct_slice(0, np.zeros((64, 64), np.uint16)))
    limits = DecodeLimits(max_decoded_bytes=64 * 64 * 4 - 1)

    with pytest.raises(DecodeBudgetError):
        decode_instance(read_instance(data, key="big"), key="big", limits=limits)
    study = assemble_study([("big", data)], limits)
    assert [(e.key, e.code) for e in study.errors] == [
        ("big", "decode_budget_exceeded")
    ]
    with pytest.raises(ValueError):
        DecodeLimits(max_decoded_bytes=0)


def test_study_budget() -> None:
    objects = [(str(z), to_bytes(ct_slice(z))) for z in range(3)]
    limits = DecodeLimits(max_study_bytes=2 * 8 * 8 * 4)
    study = assemble_study(objects, limits)
    assert [e.code for e in study.errors] == ["study_budget_exceeded"]


def test_report_is_json_and_has_no_patient_data() -> None:
    objects = [(f"k{z}", to_bytes(ct_slice(z))) for z in range(3)]
    study = assemble_study(objects)

    text = json.dumps(study.to_dict())

    assert "Synthetic" not in text and "SYN-0" not in text
    report = study.to_dict()["series"][0]
    for field in (
        "series_uid", "modality", "kind", "shape", "spacing_mm", "direction",
        "affine", "instances_used", "instances_excluded", "warnings",
        "transfer_syntaxes",
    ):  # fmt: skip
        assert field in report
    assert report["shape"] == [1, 3, 8, 8]
    assert np.array(report["direction"]) == pytest.approx(np.eye(3))


def test_unexpected_failure_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import series as series_module

    real = series_module.decode_instance

    def flaky(ds, *, key, limits=None):  # type: ignore[no-untyped-def]
        if key == "boom":
            raise RuntimeError("decoder crashed")
        return real(ds, key=key, limits=limits)

    monkeypatch.setattr(series_module, "decode_instance", flaky)
    objects = [("boom", to_bytes(ct_slice(0)))] + [
        (f"k{z}", to_bytes(ct_slice(z))) for z in (1, 2)
    ]
    study = assemble_study(objects)
    assert [(e.key, e.code) for e in study.errors] == [("boom", "internal_error")]
    assert study.series[0].array.shape == (1, 2, 8, 8)


def test_time_series_by_repeated_positions_and_duplicates() -> None:
    objects = []
    for t in range(3):
        for z in range(4):
            value = np.full((8, 8), 1024 + 100 * t + z, np.uint16)
            n = 1 + t * 4 + z
            objects.append((f"i{n}", to_bytes(ct_slice(z, value, instance_number=n))))
    (volume,) = assemble_study(objects[::-1]).series
    assert volume.array.shape == (3, 4, 8, 8)
    assert volume.array[:, :, 0, 0].tolist() == [
        [0, 1, 2, 3], [100, 101, 102, 103], [200, 201, 202, 203],
    ]  # fmt: skip

    # an extra copy at one position is a duplicate, not a time point
    extra = ("dup", to_bytes(ct_slice(1, instance_number=99)))
    (volume,) = assemble_study([*objects[:4], extra]).series
    assert volume.array.shape == (1, 4, 8, 8)
    assert {e.code for e in volume.report.instances_excluded} == {"duplicate_position"}
    assert "duplicate_positions" in volume.report.warnings


def test_acquisitions_with_different_ranges_split() -> None:
    objects = [
        (f"a{z}", to_bytes(ct_slice(z, acquisition_number=1))) for z in (0, 1, 2)
    ] + [(f"b{z}", to_bytes(ct_slice(z, acquisition_number=2))) for z in (2, 3)]
    study = assemble_study(objects)
    assert [s.array.shape for s in study.series] == [(1, 3, 8, 8), (1, 2, 8, 8)]
    assert all("acquisitions_split" in s.report.warnings for s in study.series)
    assert [s.report.part for s in study.series] == [0, 1]
