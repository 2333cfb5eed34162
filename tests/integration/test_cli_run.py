"""`medray run --json` through the CLI: summary keys and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from models import ModelCard
from ray_cluster.cli.main import cli
from ray_cluster.ingest import ingest_folder

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(s3_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDRAY_STORAGE__ENDPOINT", s3_server.endpoint)
    monkeypatch.setenv("MEDRAY_STORAGE__ACCESS_KEY", s3_server.access_key)
    monkeypatch.setenv("MEDRAY_STORAGE__SECRET_KEY", s3_server.secret_key)
    monkeypatch.setenv("MEDRAY_INFERENCE__CACHE_DIR", str(tmp_path / "cache"))


def test_run_json_summary_and_exit_codes(
    cli_env: None,
    ray_local: None,
    tiny_model: ModelCard,
    s3_server: Any,
    bucket: str,
    shared_data: Path,
) -> None:
    url = f"s3://{bucket}/cli/"
    store = s3_server.store()
    ingest_folder(store, shared_data / "dicom" / "xr_dx_chest_highdicom", url)
    runner = CliRunner()

    ok = runner.invoke(cli, ["run", url, "--model", tiny_model.name, "--json"])
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.output.strip().splitlines()[-1])
    for key in (
        "job_id",
        "studies_total",
        "studies_ok",
        "studies_failed",
        "results_prefix",
        "seconds",
    ):
        assert key in summary
    assert summary["studies_ok"] == 1

    ingest_folder(store, shared_data / "pitfalls" / "p17_junk_in_bucket", url)
    some_failed = runner.invoke(cli, ["run", url, "--model", tiny_model.name, "--json"])
    assert some_failed.exit_code == 1
    again = json.loads(some_failed.output.strip().splitlines()[-1])
    assert again["studies_already_done"] == 1
    assert again["objects_rejected"] >= 1

    unknown = runner.invoke(cli, ["run", url, "--model", "no-such-model"])
    assert unknown.exit_code == 2
