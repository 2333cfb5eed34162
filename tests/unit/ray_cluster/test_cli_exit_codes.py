"""Exit codes: 2 on usage or configuration errors, secrets never printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ray_cluster.cli.main import cli


def test_config_check_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDRAY_STORAGE__ACCESS_KEY", "AKIA-SHOULD-NOT-PRINT")
    monkeypatch.setenv("MEDRAY_STORAGE__SECRET_KEY", "very-secret-value")
    result = CliRunner().invoke(cli, ["config", "check", "--json"])
    assert result.exit_code == 0, result.output
    assert "SHOULD-NOT-PRINT" not in result.output
    assert "very-secret-value" not in result.output


def test_unknown_setting_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDRAY_STORAGE__BOGUS", "1")
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 2
    assert "storage.bogus" in result.output


def test_bad_yaml_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "medray.yaml"
    config.write_text("storage: [not, a, mapping\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(config)])
    assert result.exit_code == 2


def test_run_without_model_exits_2() -> None:
    result = CliRunner().invoke(cli, ["run", "s3://bucket/prefix/"])
    assert result.exit_code == 2
    assert "--model" in result.output


def test_run_with_bad_url_exits_2() -> None:
    result = CliRunner().invoke(cli, ["run", "not-a-url", "--model", "x"])
    assert result.exit_code == 2


def test_unknown_subcommand_exits_2() -> None:
    assert CliRunner().invoke(cli, ["frobnicate"]).exit_code == 2
