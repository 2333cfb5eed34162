"""``medray serve``: the HTTP diagnosis service on Ray Serve."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

import click

from ray_cluster.cli._common import (
    EXIT_USAGE,
    build_settings,
    config_option,
    echo_json,
    handle_errors,
    json_option,
)

if TYPE_CHECKING:
    from ray_cluster.config import Settings

__all__ = ["serve"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Model NAME or NAME:VERSION to serve; repeat for several "
    "(default: inference.model).",
)
@click.option(
    "--address",
    envvar="MEDRAY_CLUSTER__ADDRESS",
    default=None,
    help="Deploy to a running cluster ('auto' or ray://HOST:PORT) and return; "
    "unset starts a local Ray and serves until interrupted.",
)
@click.option("--host", default=None, help="Address the HTTP proxy binds.")
@click.option("--port", type=int, default=None, help="HTTP port.")
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File with one accepted API key per line (on every node).",
)
@config_option
@json_option
@click.pass_context
@handle_errors
def serve(
    ctx: click.Context,
    models: tuple[str, ...],
    address: str | None,
    host: str | None,
    port: int | None,
    api_key_file: Path | None,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Serve models over HTTP: POST /v1/models/NAME/predict and more.

    Every route but /healthz and /readyz needs an API key (serve.api_key_file,
    MEDRAY_SERVE__API_KEYS). See docs/serve.md.
    """
    settings = build_settings(
        config_path,
        {
            "cluster": {"address": address},
            "serve": {"host": host, "port": port, "api_key_file": api_key_file},
        },
    )
    names = list(models) or (
        [settings.inference.model] if settings.inference.model else []
    )
    if not names:
        click.echo(
            "medray serve: give --model NAME (see `medray models list`)", err=True
        )
        sys.exit(EXIT_USAGE)
    log_level = str(ctx.find_root().params.get("log_level") or "WARNING")
    # Stdout carries the one result line (the URL, or --json's document); what
    # Ray prints for its processes goes to the console with the logs.
    result_out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        _serve(settings, names, log_level, as_json, result_out)


def _serve(
    settings: Settings,
    names: list[str],
    log_level: str,
    as_json: bool,
    result_out: TextIO,
) -> None:
    from ray_cluster.serve import deploy, shutdown

    # A service manager stops with SIGTERM: shut down as on Ctrl-C, also while
    # the service is still starting.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        deployed = deploy(settings, names, log_level=log_level)
    except KeyboardInterrupt:
        click.echo("stopping before the service was up", err=True)
        if settings.cluster.address is None:  # our own local Ray: stop it all
            shutdown(stop_ray=True)
        return
    # Again: Ray's driver put its own SIGTERM handler (a stack dump) in place.
    signal.signal(signal.SIGTERM, _interrupt)
    served = [
        {"name": c.name, "version": c.version, "sha256": c.sha256}
        for c in deployed.models
    ]
    if as_json:
        echo_json({"url": deployed.url, "models": served}, file=result_out)
    else:
        names_served = ", ".join(m["name"] for m in served)
        click.echo(f"serving {names_served} at {deployed.url}", file=result_out)
    result_out.flush()
    if not deployed.started_ray:
        return
    click.echo("press Ctrl-C to stop", err=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
    finally:
        shutdown(stop_ray=True)
