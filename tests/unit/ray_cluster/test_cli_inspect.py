"""`medray inspect --json` on every corpus folder gives what EXPECTED.md says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ray_cluster.cli.main import cli

# folder -> [(kind, shape, spacing_mm or None)] for its image series, sorted.
EXPECTED: dict[str, list[tuple[str, list[int], list[float] | None]]] = {
    "ct_philips_head_phantom_S21570": [
        ("2d", [1, 256, 512], None),
        ("volume", [1, 28, 512, 512], [0.451, 0.451, 5.0]),
    ],
    "ct_localizer_j2k_lossy_marotech": [("2d", [1, 716, 512], None)],
    "ct_single_j2k_elscint": [("2d", [1, 512, 512], None)],
    "ct_single_jpegls_nearlossless_wg04": [("2d", [1, 512, 512], None)],
    "mr_enhanced_multiframe_siemens_xa10": [
        ("volume", [4, 6, 64, 64], [3.375, 3.375, 2.4])
    ],
    "mr_ge_epi_fmri_nih": [("volume", [10, 15, 64, 64], [3.75, 3.75, 5.0])] * 2,
    "mr_siemens_epi_mosaic_nih": [("volume", [2, 5, 72, 72], [3.0, 3.0, 12.0])] * 4,
    "mr_siemens_transfer_syntaxes": [("volume", [1, 35, 64, 64], [3.25, 3.25, 3.6])]
    * 9,
    "mr_single_jpeg_lossless_p14_philips": [("2d", [1, 1024, 1024], None)],
    "xr_cr_chest_rg2": [("2d", [1, 2140, 1760], None)],
    "xr_cr_rg3_monochrome1": [("2d", [2, 1760, 1760], None)],
    "xr_dx_chest_highdicom": [("2d", [1, 169, 211], None)],
}


def _inspect(folder: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["inspect", str(folder), "--json"])
    records = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    failed = any(r.get("kind") == "object_error" for r in records)
    assert result.exit_code == (1 if failed else 0), result.output
    return records


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_inspect_json_matches_expected(shared_data: Path, name: str) -> None:
    records = _inspect(shared_data / "dicom" / name)
    series = [r for r in records if "series_uid" in r and r.get("role") != "derived"]
    for record in series:
        for field in (
            "series_uid",
            "shape",
            "spacing_mm",
            "instances_used",
            "instances_excluded",
            "warnings",
        ):
            assert field in record, field
    got = sorted((r["kind"], r["shape"]) for r in series)
    assert got == sorted((kind, shape) for kind, shape, _ in EXPECTED[name])
    for kind, shape, spacing in EXPECTED[name]:
        if spacing is None:
            continue
        match = [r for r in series if r["kind"] == kind and r["shape"] == shape]
        assert match[0]["spacing_mm"] == pytest.approx(spacing, abs=1e-3)


def test_inspect_reports_dirfile_as_skipped(shared_data: Path) -> None:
    records = _inspect(shared_data / "dicom" / "ct_philips_head_phantom_S21570")
    skipped = [r for r in records if r.get("kind") == "skipped_object"]
    assert len(skipped) == 4
    assert all(r["object_key"].endswith("DIRFILE") for r in skipped)
    derived = [r for r in records if r.get("role") == "derived"]
    assert derived and all(r["kind"] == "2d" for r in derived)


def test_inspect_junk_folder_names_each_object(shared_data: Path) -> None:
    records = _inspect(shared_data / "pitfalls" / "p17_junk_in_bucket")
    issues = [r for r in records if "object_key" in r]
    assert {r["object_key"] for r in issues} >= {"README.txt", "thumb.jpg", "empty.dcm"}
    for record in issues:
        assert record["code"]
