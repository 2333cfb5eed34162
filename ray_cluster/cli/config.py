"""``medray config check``: validate and print the effective settings."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from ray_cluster.cli._common import (
    build_settings,
    config_option,
    echo_json,
    handle_errors,
    json_option,
)

__all__ = ["config"]


@click.group()
def config() -> None:
    """Inspect medray's settings."""


@config.command("check")
@config_option
@json_option
@handle_errors
def check(config_path: Path | None, as_json: bool) -> None:
    """Validate the settings (file, environment) and print them, secrets masked."""
    data = build_settings(config_path).public_dict()
    if as_json:
        echo_json(data)
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
