"""Entry point of the ``medray`` console script."""

from __future__ import annotations

import importlib
import logging

import click

from ray_cluster.log import configure_logging

__all__ = ["cli", "main"]

# name -> module under ray_cluster.cli holding a click command of that name.
_SUBCOMMANDS = {
    "store": "store",
    "ingest": "ingest",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    default="WARNING",
    envvar="MEDRAY_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Level of log records written to stderr.",
)
@click.option(
    "--log-format",
    default="text",
    type=click.Choice(["text", "json"]),
    help="Log records as text or one JSON object per line.",
)
@click.version_option(package_name="medray")
def cli(log_level: str, log_format: str) -> None:
    """medray: DICOM studies in object storage, analysed on Ray."""
    configure_logging(log_level, "json" if log_format == "json" else "text")


def _register() -> None:
    for name, module_name in _SUBCOMMANDS.items():
        module = importlib.import_module(f"ray_cluster.cli.{module_name}")
        cli.add_command(getattr(module, name.replace("-", "_")), name)


def main() -> None:
    """Run the console script."""
    logging.captureWarnings(True)
    _register()
    cli(prog_name="medray")
