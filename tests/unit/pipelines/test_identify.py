"""`identify_instance` tells what `parse_header` tells about status and study."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from pipelines import identify_instance, parse_header

PYDICOM_FILES = sorted(
    p
    for p in (Path(pydicom.__file__).parent / "data" / "test_files").rglob("*")
    if p.is_file()
)


def _agree(key: str, data: bytes) -> None:
    header = parse_header(data, key=key, total_size=len(data))
    found = identify_instance(data, key=key)
    assert (found.status, found.reason, found.study_uid) == (
        header.status,
        header.reason,
        header.study_uid,
    ), key


def test_pydicom_files() -> None:
    assert len(PYDICOM_FILES) > 100
    for path in PYDICOM_FILES:
        _agree(path.name, path.read_bytes())


def test_shared_corpus_and_pitfalls(shared_data: Path) -> None:
    files = [p for p in sorted(shared_data.rglob("*")) if p.is_file()]
    assert files
    for path in files:
        _agree(str(path.relative_to(shared_data)), path.read_bytes())


@pytest.mark.parametrize("data", [b"", b"\0" * 300, b"not dicom at all" * 20])
def test_not_dicom(data: bytes) -> None:
    assert identify_instance(data, key="x").status == "not_dicom"
