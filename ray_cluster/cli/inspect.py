"""``medray inspect``: the validation report of every series, before a job."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ray_cluster.api import inspect_source
from ray_cluster.cli._common import (
    EXIT_SOME_FAILED,
    build_settings,
    config_option,
    handle_errors,
    json_option,
)

__all__ = ["inspect"]


def _rows(records: list[dict[str, Any]]) -> Iterator[list[str]]:
    for record in records:
        if "series_uid" in record:
            yield [
                record["study_key"],
                record["series_uid"][-24:],
                str(record.get("modality") or ""),
                record["kind"],
                "x".join(str(n) for n in record.get("shape") or []),
                " x ".join(f"{v:.3g}" for v in record.get("spacing_mm") or []),
                str(record.get("instances_used_count", "")),
                ", ".join(record.get("warnings") or []),
            ]


@click.command()
@click.argument("source")
@config_option
@json_option
@handle_errors
def inspect(source: str, config_path: Path | None, as_json: bool) -> None:
    """Report every series under LOCAL_DIR or s3://BUCKET/PREFIX.

    Exits 1 when some object could not be used (an object_error record).

    With --json: one JSON object per line; series have series_uid, shape,
    spacing_mm, instances_used, instances_excluded and warnings (reason codes);
    objects that were skipped or refused have object_key, kind and code.
    """
    settings = build_settings(config_path)
    records = inspect_source(source, settings)
    if as_json:
        for record in records:
            click.echo(json.dumps(record, sort_keys=True))
    else:
        _print_table(records)
    if any(r.get("kind") == "object_error" for r in records):
        sys.exit(EXIT_SOME_FAILED)  # each has its record above


def _print_table(records: list[dict[str, Any]]) -> None:
    table = Table(
        "study",
        "series (end)",
        "mod",
        "kind",
        "shape",
        "spacing mm",
        "used",
        "warnings",
    )
    for row in _rows(records):
        table.add_row(*row)
    console = Console()
    console.print(table)
    for record in records:
        if "object_key" in record:
            console.print(
                f"{record['kind']}: {record['object_key']} ({record['code']})",
                highlight=False,
            )
