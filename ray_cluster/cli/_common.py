"""Options and helpers shared by every subcommand."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from ray_cluster.config import Settings, load_settings
from ray_cluster.errors import ClusterError, ConfigError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
#: Stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


def config_option(func: F) -> F:
    """Add ``--config`` to a command."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="MEDRAY_CONFIG",
        default=None,
        help="YAML settings file (sections storage, cluster, inference, ...).",
    )(func)


def json_option(func: F) -> F:
    """Add ``--json`` to a command."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object on stdout."
    )(func)


def build_settings(
    config_path: Path | None, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Settings:
    """Build settings for a command; config errors exit with code 2."""
    return load_settings(config_path, overrides=overrides)


def echo_json(data: Any, file: IO[str] | None = None) -> None:
    """Write one JSON document on stdout (or ``file``)."""
    click.echo(json.dumps(data, indent=None, sort_keys=True, default=str), file=file)


def handle_errors(func: F) -> F:
    """Turn our errors into a one-line message on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"medray: configuration error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except ClusterError as exc:
            click.echo(f"medray: error: {exc}", err=True)
            sys.exit(EXIT_SOME_FAILED)

    return wrapper  # type: ignore[return-value]
