"""``medray predict``: send one study's files to a running ``medray serve``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from ray_cluster.cli._common import EXIT_SOME_FAILED, EXIT_USAGE, echo_json
from ray_cluster.client import ENV_API_KEY, ClientError, MedrayClient, read_api_key

__all__ = ["predict"]


@click.command()
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--url",
    envvar="MEDRAY_SERVE_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Base URL of the service.",
)
@click.option("--model", default="reference", show_default=True, help="Model name.")
@click.option(
    "--api-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help=f"File holding the API key (default: env {ENV_API_KEY}).",
)
@click.option("--timeout", "timeout_s", type=float, default=120.0, help="Seconds.")
def predict(
    files: tuple[Path, ...],
    url: str,
    model: str,
    api_key_file: Path | None,
    timeout_s: float,
) -> None:
    """Diagnose the study made of FILE... and print its result as JSON.

    Exit 0 when the study has a result, 1 when the study or request failed,
    2 on usage errors.
    """
    key = read_api_key(api_key_file)
    if key is None:
        click.echo(
            f"medray predict: no API key; set {ENV_API_KEY} or give --api-key-file",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    try:
        with MedrayClient(url, api_key=key, timeout_s=timeout_s) as client:
            result = client.predict(list(files), model=model)
    except ClientError as exc:
        click.echo(f"medray predict: {_with_arguments(str(exc))}", err=True)
        sys.exit(EXIT_USAGE if exc.status in (401, 403, 404, 415) else EXIT_SOME_FAILED)
    echo_json(result)
    sys.exit(EXIT_SOME_FAILED if result.get("error") else 0)


def _with_arguments(message: str) -> str:
    """Say which FILE argument a part named in the service's message is.

    Parts are numbered from 0 in the order of the FILE arguments. The position,
    not the path, is added: a path may hold patient data.
    """
    return _PART.sub(lambda m: f"{m[0]} (FILE argument {int(m[1]) + 1})", message)


_PART = re.compile(r"\bpart-(\d+)\b")
