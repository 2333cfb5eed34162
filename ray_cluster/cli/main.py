"""Entry point of the ``medray`` console script.

Subcommands live in one module each and are imported only when used, so that
``medray --help`` and ``medray store status`` do not import Ray or PyTorch.
"""

from __future__ import annotations

import importlib
import logging

import click

from ray_cluster.log import configure_logging

__all__ = ["cli", "main"]

# name -> (module under ray_cluster.cli, attribute, one-line help)
_SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "store": ("store", "store", "Run the embedded S3 server (up, down, status)."),
    "ingest": ("ingest", "ingest", "Upload a local folder of studies to a prefix."),
    "catalog": ("catalog", "catalog", "Catalogue the DICOM headers under a prefix."),
    "inspect": ("inspect", "inspect", "Validation report of every series."),
    "run": ("run", "run", "Run a model over every study under a prefix."),
    "status": ("status", "status", "Show the latest jobs of a bucket."),
    "models": ("models", "models", "List, show, push and train models."),
    "demo": ("demo", "demo", "Run the main job end to end on this machine."),
    "config": ("config", "config", "Validate and print the settings."),
    "cluster": ("cluster", "cluster", "Show nodes, pools and pending demand."),
    "serve": ("serve", "serve", "Serve models over HTTP with Ray Serve."),
    "predict": ("predict", "predict", "Send one study to a running service."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_SUBCOMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in _SUBCOMMANDS:
            return None
        module_name, attribute, _ = _SUBCOMMANDS[cmd_name]
        module = importlib.import_module(f"ray_cluster.cli.{module_name}")
        command: click.Command = getattr(module, attribute)
        self.add_command(command, cmd_name)
        return command

    def format_commands(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        rows = [(name, _SUBCOMMANDS[name][2]) for name in sorted(_SUBCOMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def main() -> None:
    """Run the console script."""
    logging.captureWarnings(True)
    cli(prog_name="medray")
