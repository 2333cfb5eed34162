"""``medray store up|down|status``: the embedded S3 store (SeaweedFS ``weed mini``)."""

from __future__ import annotations

from pathlib import Path

import click

from ray_cluster.cli._common import (
    build_settings,
    config_option,
    echo_json,
    handle_errors,
    json_option,
)
from ray_cluster.config import Settings
from ray_cluster.embedded import CREDENTIALS_FILE, DEFAULT_S3_PORT, EmbeddedStore

__all__ = ["store"]


def _configured_elsewhere(settings: Settings, as_json: bool, action: str) -> bool:
    endpoint = settings.storage.endpoint
    if endpoint is None:
        return False
    if as_json:
        echo_json({"embedded": False, "endpoint": endpoint, "action": "none"})
    else:
        click.echo(
            f"storage.endpoint is set to {endpoint}; the embedded store is not used "
            f"and nothing was {action}"
        )
    return True


@click.group("store")
def store() -> None:
    """Run a local S3 store for laptops and tests (not used with storage.endpoint)."""


@store.command("up")
@config_option
@json_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_S3_PORT,
    show_default=True,
    help="S3 port on 127.0.0.1; 0 picks a free one.",
)
@handle_errors
def up(config_path: Path | None, as_json: bool, port: int) -> None:
    """Start the embedded store in the background (nothing if already running)."""
    settings = build_settings(config_path)
    if _configured_elsewhere(settings, as_json, "started"):
        return
    info = EmbeddedStore(settings.storage.data_dir, port=port).start()
    credentials = info.data_dir / CREDENTIALS_FILE
    if as_json:
        echo_json(
            {
                "embedded": True,
                "already_running": info.already_running,
                "endpoint": info.endpoint,
                "pid": info.pid,
                "ports": dict(info.ports),
                "data_dir": str(info.data_dir),
                "credentials_file": str(credentials),
            }
        )
        return
    verb = "already running" if info.already_running else "started"
    click.echo(f"embedded store {verb} at {info.endpoint} (pid {info.pid})")
    click.echo(f"keys: {credentials} (usable as storage.secret_file)")


@store.command("down")
@config_option
@json_option
@handle_errors
def down(config_path: Path | None, as_json: bool) -> None:
    """Stop the embedded store (SIGTERM, then SIGKILL); its data is kept."""
    settings = build_settings(config_path)
    if _configured_elsewhere(settings, as_json, "stopped"):
        return
    stopped = EmbeddedStore(settings.storage.data_dir).stop()
    if as_json:
        echo_json({"embedded": True, "stopped": stopped})
    else:
        click.echo(
            "embedded store stopped" if stopped else "embedded store not running"
        )


@store.command("status")
@config_option
@json_option
@handle_errors
def status(config_path: Path | None, as_json: bool) -> None:
    """Say whether the embedded store runs and where (never its keys)."""
    settings = build_settings(config_path)
    if settings.storage.endpoint is not None:
        if as_json:
            echo_json({"embedded": False, "endpoint": settings.storage.endpoint})
        else:
            click.echo(f"storage.endpoint is set to {settings.storage.endpoint}")
        return
    result = EmbeddedStore(settings.storage.data_dir).status()
    if as_json:
        echo_json({"embedded": True, **result.to_dict()})
    elif result.running:
        click.echo(f"embedded store running at {result.endpoint} (pid {result.pid})")
    else:
        click.echo(f"embedded store not running (data in {result.data_dir})")
