"""``medray catalog``: list a prefix and read every header."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ray_cluster.catalog import build_catalog, catalog_key, load_catalog
from ray_cluster.cli._common import (
    build_settings,
    config_option,
    echo_json,
    handle_errors,
    json_option,
)
from ray_cluster.storage import ObjectStore, S3Url

__all__ = ["catalog"]


@click.command()
@click.argument("url")
@click.option("--rebuild", is_flag=True, help="Read every header again.")
@config_option
@json_option
@handle_errors
def catalog(url: str, rebuild: bool, config_path: Path | None, as_json: bool) -> None:
    """Catalogue the DICOM objects under s3://BUCKET/PREFIX (headers only)."""
    settings = build_settings(config_path)
    target = S3Url.parse(url)
    store = ObjectStore.from_settings(settings.storage)
    previous = None if rebuild else load_catalog(store, settings, target)
    result = build_catalog(store, settings, target, previous=previous)
    summary = result.summary()
    summary["catalog"] = f"s3://{target.bucket}/{catalog_key(settings, target)}"
    if as_json:
        echo_json(summary)
        return
    console = Console()
    console.print(
        f"{summary['url']}: {summary['objects']} objects, {summary['studies']} "
        f"studies, {summary['series']} series, {summary['instances']} image instances"
    )
    console.print(f"status: {summary['by_status']}")
    console.print(f"modalities: {summary['modalities']}")
    console.print(f"catalog: {summary['catalog']}")
