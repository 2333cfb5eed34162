"""``ingest_folder`` and ``medray ingest`` against a real ``weed mini``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from dicom_factory import CT_IMAGE, dicom_bytes
from pydicom.uid import generate_uid

from pipelines.records import series_key, study_key
from ray_cluster.cli.ingest import ingest as ingest_command
from ray_cluster.ingest import UNSORTED, ingest_folder, object_key_for, read_uids
from ray_cluster.storage import S3Url

if TYPE_CHECKING:
    from tests.conftest import S3Server

pytestmark = pytest.mark.integration

PATIENT = "DOE_JOHN"


def _write_dicom(path: Path, study_uid: str, series_uid: str, marker: int) -> None:
    data = dicom_bytes(
        study_uid,
        sop_class=CT_IMAGE,
        pixels=bytes([marker % 256]) * 8,
        shape=(2, 2),
        bits=16,
        SeriesInstanceUID=series_uid,
        InstanceNumber=marker,
        PatientName=PATIENT,
        PatientID="PID-4711",
        AccessionNumber="ACC-0815",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """A PACS-like export whose folder and file names carry the patient name."""
    root = tmp_path / f"{PATIENT}_export"
    study, series = generate_uid(), generate_uid()
    for i in range(3):
        _write_dicom(root / PATIENT / f"{PATIENT}_{i}.dcm", study, series, i)
    (root / PATIENT / f"{PATIENT}_notes.txt").write_text("free text about the patient")
    return root


def test_keys_carry_no_patient_data(
    s3_server: S3Server, bucket: str, export: Path
) -> None:
    store = s3_server.store()
    report = ingest_folder(store, export, f"s3://{bucket}/in", threads=4)
    assert (report.files, report.uploaded, report.failed) == (4, 4, 0)
    assert report.unsorted == 1

    keys = [o.key for o in store.list(bucket)]
    assert len(keys) == 4
    for key in keys:
        for secret in (PATIENT, "DOE", "JOHN", "PID-4711", "ACC-0815", "notes"):
            assert secret.lower() not in key.lower()
    sample = next(export.rglob("*_0.dcm"))
    study_uid, series_uid = read_uids(sample) or ("", "")
    expected = object_key_for(sample, "in")
    assert expected in keys
    assert expected.split("/")[1:3] == [study_key(study_uid), series_key(series_uid)]
    assert store.stat(bucket, expected).content_type == "application/dicom"
    assert PATIENT not in json.dumps(report.to_dict())


def test_second_run_skips_everything(
    s3_server: S3Server, bucket: str, export: Path
) -> None:
    store = s3_server.store()
    first = ingest_folder(store, export, S3Url(bucket, "again"))
    second = ingest_folder(store, export, S3Url(bucket, "again"))
    assert first.uploaded == 4
    assert (second.uploaded, second.skipped_same, second.bytes_uploaded) == (0, 4, 0)

    # A copy under another name is the same content: skipped, not duplicated.
    copy = export / "copy.dcm"
    shutil.copy(next(export.rglob("*_1.dcm")), copy)
    third = ingest_folder(store, export, S3Url(bucket, "again"))
    assert (third.uploaded, third.skipped_same) == (0, 5)
    assert len(list(store.list(bucket, "again/"))) == 4


def test_changed_metadata_is_reuploaded(
    s3_server: S3Server, bucket: str, export: Path
) -> None:
    store = s3_server.store()
    ingest_folder(store, export, S3Url(bucket, "p"))
    key = object_key_for(next(export.rglob("*_2.dcm")), "p")
    store.put(bucket, key, b"corrupted", metadata={"sha256": "0" * 64})
    report = ingest_folder(store, export, S3Url(bucket, "p"))
    assert (report.uploaded, report.skipped_same) == (1, 3)
    assert store.get(bucket, key) == next(export.rglob("*_2.dcm")).read_bytes()


def test_junk_goes_to_unsorted(
    s3_server: S3Server, bucket: str, shared_data: Path
) -> None:
    junk = shared_data / "pitfalls" / "p17_junk_in_bucket"
    store = s3_server.store()
    report = ingest_folder(store, junk, S3Url(bucket, "p17"))
    files = [p for p in junk.iterdir() if p.is_file()]
    assert report.failed == 0 and report.files == len(files)

    # CT999.dcm is a Structured Report: DICOM of the study, kept with it (the
    # pipeline skips it later); the rest has no study and goes to _unsorted/.
    with_study = {"CT000.dcm", "CT001.dcm", "CT002.dcm", "CT999.dcm"}
    for path in files:
        key = object_key_for(path, "p17")
        assert store.exists(bucket, key)
        assert (f"/{UNSORTED}/" not in key) == (path.name in with_study), path.name
    assert report.unsorted == len(files) - len(with_study)
    for name in ("thumb.jpg", "README.txt", "empty.dcm", "DICOMDIR", "._CT000.dcm"):
        assert f"/{UNSORTED}/" in object_key_for(junk / name, "p17")


def test_cli_json(s3_server: S3Server, bucket: str, export: Path) -> None:
    env = {
        "MEDRAY_STORAGE__ENDPOINT": s3_server.endpoint,
        "MEDRAY_STORAGE__ACCESS_KEY": s3_server.access_key,
        "MEDRAY_STORAGE__SECRET_KEY": s3_server.secret_key,
    }
    args = [str(export), f"s3://{bucket}/cli", "--json", "--threads", "2"]
    result = CliRunner().invoke(ingest_command, args, env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["uploaded"], report["skipped_same"], report["failed"]) == (4, 0, 0)
    assert report["url"] == f"s3://{bucket}/cli" and report["seconds"] >= 0

    bad = CliRunner().invoke(ingest_command, [str(export), "not-a-url"], env=env)
    assert bad.exit_code == 2 and "s3://bucket/prefix" in bad.output
