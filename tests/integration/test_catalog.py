"""The catalog: ranged header reads, non-DICOM objects, Parquet, increments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from ray_cluster.catalog import build_catalog, catalog_key, load_catalog
from ray_cluster.config import Settings, StorageSettings
from ray_cluster.ingest import ingest_folder
from ray_cluster.storage import S3Url

pytestmark = pytest.mark.integration

PATIENT_COLUMNS = {"patient_name", "patient_id", "patient_birth_date", "accession"}


def _small_probe(settings: Settings) -> Settings:
    storage = settings.storage.model_dump()
    storage.update(header_probe_bytes=1024)
    return settings.model_copy(update={"storage": StorageSettings(**storage)})


def test_catalog_reads_headers_with_ranges(
    s3_server: Any, bucket: str, shared_data: Path
) -> None:
    store = s3_server.store()
    url = S3Url.parse(f"s3://{bucket}/in/")
    ingest_folder(store, shared_data / "pitfalls" / "p20_stream_from_object_store", url)
    ingest_folder(store, shared_data / "pitfalls" / "p17_junk_in_bucket", url)
    ingest_folder(store, shared_data / "dicom" / "ct_philips_head_phantom_S21570", url)
    settings = _small_probe(s3_server.settings)

    seen: list[str] = []
    catalog = build_catalog(
        store, settings, url, on_header=lambda h: seen.append(h.key)
    )
    summary = catalog.summary()
    assert summary["objects"] == len(seen)
    statuses = summary["by_status"]
    assert statuses["image"] >= 36
    assert statuses.get("not_dicom", 0) + statuses.get("unreadable", 0) >= 4
    assert statuses["no_pixels"] >= 4  # DIRFILEs, DICOMDIR, the SR
    studies = catalog.studies()
    phantom = max(studies.values(), key=len)
    assert len(phantom) == 35
    assert all(h.rows and h.columns for h in phantom)

    data = store.get(url.bucket, catalog_key(settings, url))
    import io

    table = pq.read_table(io.BytesIO(data))
    assert not PATIENT_COLUMNS & set(table.column_names)
    assert "Anonymized" not in data.decode("latin-1")

    again: list[str] = []
    previous = load_catalog(store, settings, url)
    assert previous is not None
    build_catalog(
        store, settings, url, previous=previous, on_header=lambda h: again.append(h.key)
    )
    assert again == []


def test_a_prefix_is_a_folder_not_the_start_of_a_name(
    s3_server: Any, bucket: str, shared_data: Path
) -> None:
    store = s3_server.store()
    here = S3Url.parse(f"s3://{bucket}/site/")
    beside = S3Url.parse(f"s3://{bucket}/site-b/")
    ingest_folder(store, shared_data / "dicom" / "xr_dx_chest_highdicom", here)
    ingest_folder(store, shared_data / "dicom" / "xr_cr_chest_rg2", beside)

    catalog = build_catalog(store, s3_server.settings, here)
    assert len(catalog.studies()) == 1
    assert all(h.key.startswith("site/") for h in catalog.headers)
