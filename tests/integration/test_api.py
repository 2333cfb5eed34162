"""The Python API a researcher uses: catalog, open a study, a torch Dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import ray_cluster as medray
from models import ModelCard
from pipelines import study_key
from ray_cluster.datasets import StudyDataset
from ray_cluster.ingest import ingest_folder
from ray_cluster.processing import result_key

pytestmark = pytest.mark.integration


@pytest.fixture
def enhanced_mr(s3_server: Any, bucket: str, shared_data: Path) -> str:
    url = f"s3://{bucket}/mr/"
    folder = shared_data / "dicom" / "mr_enhanced_multiframe_siemens_xa10"
    ingest_folder(s3_server.store(), folder, url)
    return url


def test_catalog_and_open_study(s3_server: Any, enhanced_mr: str) -> None:
    settings = s3_server.settings
    catalog = medray.catalog(enhanced_mr, settings)
    summary = catalog.summary()
    assert summary["studies"] == 1
    assert summary["instances"] == 4
    uid = next(iter(catalog.studies()))
    study = medray.open_study(enhanced_mr, uid, settings)
    (series,) = study.series
    assert series.kind == "volume"
    assert series.array.shape == (4, 6, 64, 64)
    assert series.report.to_dict()["spacing_mm"] == pytest.approx([3.375, 3.375, 2.4])


def test_inspect_source_on_prefix(s3_server: Any, enhanced_mr: str) -> None:
    records = medray.inspect_source(enhanced_mr, s3_server.settings)
    series = [r for r in records if "series_uid" in r]
    assert [r["shape"] for r in series] == [[4, 6, 64, 64]]


def test_study_dataset_gives_model_input(
    s3_server: Any, tiny_model: ModelCard, enhanced_mr: str
) -> None:
    dataset = StudyDataset(enhanced_mr, tiny_model.input, s3_server.settings)
    assert len(dataset) == 1
    item = dataset[0]
    (series,) = item["series"]
    size = tiny_model.input["size"]
    assert tuple(series["input"].shape[1:]) == (1, *size)


def test_load_results_gives_the_prefixs_studies_only(
    s3_server: Any, tiny_model: ModelCard, bucket: str, shared_data: Path
) -> None:
    settings = s3_server.settings
    store = s3_server.store()
    uids = {}
    for name, folder in (
        ("one", "mr_enhanced_multiframe_siemens_xa10"),
        ("two", "xr_dx_chest_highdicom"),
    ):
        url = f"s3://{bucket}/results-{name}/"
        ingest_folder(store, shared_data / "dicom" / folder, url)
        (uids[name],) = medray.catalog(url, settings).studies()
        key = result_key(
            settings.inference.results_prefix, tiny_model, study_key(uids[name])
        )
        store.put(bucket, key, json.dumps({"study_uid": uids[name]}).encode())

    found = medray.load_results(f"s3://{bucket}/results-one/", "tiny", settings)
    assert found == [{"study_uid": uids["one"]}]
