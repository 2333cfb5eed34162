"""Which files `medray ingest` finds under a folder."""

from __future__ import annotations

from pathlib import Path

from ray_cluster.ingest import _walk


def test_linked_folders_are_followed_once(tmp_path: Path) -> None:
    study = tmp_path / "store" / "study"
    study.mkdir(parents=True)
    (study / "a.dcm").write_bytes(b"x")
    export = tmp_path / "export"
    export.mkdir()
    (export / "linked").symlink_to(study, target_is_directory=True)
    (export / "again").symlink_to(study, target_is_directory=True)
    (study / "loop").symlink_to(export, target_is_directory=True)

    found = _walk(export)
    assert [p.name for p in found] == ["a.dcm"]
