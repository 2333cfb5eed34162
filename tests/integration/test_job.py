"""The batch job end to end: real SeaweedFS, real local Ray, real corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models import ModelCard
from pipelines import study_key
from ray_cluster.catalog import ensure_catalog
from ray_cluster.ingest import ingest_folder
from ray_cluster.job import run_job
from ray_cluster.processing import RESULT_SCHEMA_VERSION
from ray_cluster.storage import ObjectStore, S3Url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FOLDERS = [
    "ct_philips_head_phantom_S21570",
    "xr_dx_chest_highdicom",
    "mr_enhanced_multiframe_siemens_xa10",
    "ct_single_j2k_elscint",
]


@pytest.fixture
def corpus_prefix(
    s3_server: Any, bucket: str, shared_data: Path
) -> tuple[ObjectStore, S3Url]:
    store = ObjectStore.from_settings(s3_server.settings.storage)
    url = S3Url.parse(f"s3://{bucket}/studies/")
    for name in FOLDERS:
        ingest_folder(store, shared_data / "dicom" / name, url)
    for name in ("p17_junk_in_bucket", "p15_truncated_files"):
        ingest_folder(store, shared_data / "pitfalls" / name, url)
    return store, url


def _results(store: ObjectStore, url: S3Url, card: ModelCard) -> dict[str, bytes]:
    prefix = f"medray-results/{card.name}/{card.sha256[:12]}/"
    return {
        i.key: store.get(url.bucket, i.key)
        for i in store.list(url.bucket, prefix)
        if i.key.endswith(".json")
    }


def test_job_runs_resumes_and_recomputes_identically(
    s3_server: Any, ray_local: None, tiny_model: ModelCard, corpus_prefix: Any
) -> None:
    store, url = corpus_prefix
    settings = s3_server.settings
    studies = ensure_catalog(store, settings, url).studies()

    first = run_job(settings, url, tiny_model.name, limit=2)
    assert first.studies_ok + first.studies_failed == 2

    second = run_job(settings, url, tiny_model.name)
    assert second.studies_already_done == 2
    assert second.studies_ok + second.studies_failed == len(studies) - 2
    assert second.objects_rejected > 0, "junk objects must become error records"
    assert second.exit_code == 1
    for error in second.errors:
        assert error["code"] and error["message"]
        assert error.get("key") or error.get("study_key")

    results = _results(store, url, tiny_model)
    assert len(results) == len(studies)
    for key, blob in results.items():
        result = json.loads(blob)
        assert result["schema_version"] == RESULT_SCHEMA_VERSION
        assert key.endswith(f"/{result['study_key']}.json")
        assert result["study_key"] == study_key(result["study_uid"])
        assert result["model"]["sha256"] == tiny_model.sha256
        assert "seconds" not in blob.decode()

    again = run_job(settings, url, tiny_model.name, redo=True)
    assert again.studies_ok + again.studies_failed == len(studies)
    assert _results(store, url, tiny_model) == results, "results must be byte-identical"

    report = f"{second.report_prefix}manifest.json"
    manifest = json.loads(store.get(url.bucket, report))
    assert manifest["job_id"] == second.job_id
    assert "access_key" not in json.dumps(manifest) or "**" in json.dumps(manifest)
    assert store.exists(url.bucket, f"{second.report_prefix}timings.parquet")


def test_corpus_expected_kinds(
    s3_server: Any, ray_local: None, tiny_model: ModelCard, corpus_prefix: Any
) -> None:
    store, url = corpus_prefix
    run_job(s3_server.settings, url, tiny_model.name)
    by_kind: dict[str, list[tuple[str, list[int]]]] = {}
    for blob in _results(store, url, tiny_model).values():
        for series in json.loads(blob)["series"]:
            by_kind.setdefault(series["kind"], []).append(
                (series["series_uid"], series["shape"])
            )
    volumes = [shape for _, shape in by_kind.get("volume", [])]
    assert any(shape[-3:] == [28, 512, 512] for shape in volumes), volumes
    assert any(shape[-3:] == [6, 64, 64] for shape in volumes), volumes


def test_job_stopped_midway_resumes_without_redoing(
    s3_server: Any,
    ray_local: None,
    tiny_model: ModelCard,
    corpus_prefix: Any,
    tmp_path: Path,
) -> None:
    """Interrupt `medray run` after its first results; the rerun skips them."""
    import os
    import signal
    import subprocess
    import sys
    import time

    store, url = corpus_prefix
    settings = s3_server.settings
    total = len(ensure_catalog(store, settings, url).studies())
    env = dict(os.environ)
    env.update(
        {
            "MEDRAY_STORAGE__ENDPOINT": s3_server.endpoint,
            "MEDRAY_STORAGE__ACCESS_KEY": s3_server.access_key,
            "MEDRAY_STORAGE__SECRET_KEY": s3_server.secret_key,
            "MEDRAY_INFERENCE__CACHE_DIR": str(tmp_path / "cache"),
            "MEDRAY_CLUSTER__NUM_CPUS": "2",
            "MEDRAY_CLUSTER__OBJECT_STORE_MB": "128",
            "MEDRAY_CLUSTER__MAX_IN_FLIGHT": "1",
        }
    )
    command = [sys.executable, "-m", "ray_cluster.cli", "run", str(url)]
    process = subprocess.Popen(
        [*command, "--model", tiny_model.name, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if _results(store, url, tiny_model):
                break
            time.sleep(0.2)
        done_before = len(_results(store, url, tiny_model))
        assert done_before >= 1, (
            process.stderr.read().decode()[-2000:]
            if process.poll() is not None and process.stderr
            else "no result in time"
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    if process.returncode == 130:  # interrupted mid-job, not finished already
        assert process.stderr is not None
        said = process.stderr.read().decode()
        assert "interrupted with" in said and "again" in said, said[-2000:]
    done = set(_results(store, url, tiny_model))
    summary = run_job(settings, url, tiny_model.name)
    assert summary.studies_already_done == len(done)
    assert summary.studies_ok + summary.studies_failed == total - len(done)
    assert len(_results(store, url, tiny_model)) == total
