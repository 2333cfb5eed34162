"""``medray demo``: the main job, end to end, on one machine.

Starts the embedded S3 server (unless an endpoint is configured), builds the
demo studies (pydicom's test files and a CT phantom) or takes ``--data DIR``,
ingests them, trains or loads the reference model, runs the batch job on a
local Ray and prints the summary.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

import click
from rich.console import Console

from ray_cluster.cli._common import (
    build_settings,
    config_option,
    echo_json,
    handle_errors,
    json_option,
)
from ray_cluster.cli.run import print_summary
from ray_cluster.config import Settings
from ray_cluster.demo import build_demo_folder
from ray_cluster.embedded import EmbeddedStore
from ray_cluster.errors import ObjectNotFoundError, StorageError
from ray_cluster.ingest import ingest_folder
from ray_cluster.job import run_job
from ray_cluster.registry import ModelRegistry
from ray_cluster.storage import ObjectStore
from ray_cluster.training import train_from_folder

__all__ = ["demo"]

logger = logging.getLogger(__name__)

MODEL = "reference"


def _ensure_model(
    settings: Settings, store: ObjectStore, train_dir: Path, console: Console
) -> str:
    registry = ModelRegistry(store, settings)
    try:
        card = registry.get_card(MODEL)
        console.print(
            f"model: {card.name} {card.version} ({card.sha256[:12]}) from the registry"
        )
        return card.name
    except ObjectNotFoundError:
        pass
    console.print(
        f"training the reference model on {train_dir} "
        "(a demonstration model, not for clinical use)"
    )
    trained = train_from_folder(
        train_dir, settings.storage.data_dir / "reference-model"
    )
    registry.push(trained.card, trained.weights_path)
    card = trained.card
    accuracy = card.metrics.get("eval_accuracy")
    held_out = card.split.get("eval", {})
    console.print(
        f"model: {card.name} {card.version} ({card.sha256[:12]}), held-out accuracy "
        f"{accuracy} per image over {held_out.get('images')} images of "
        f"{held_out.get('studies')} studies (a demonstration model trained on a "
        "handful of studies; see its card)"
    )
    return trained.card.name


@click.command()
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of your own studies (default: built-in demo studies).",
)
@click.option(
    "--prefix",
    default=None,
    help="Prefix in the demo bucket (default: derived from the data folder).",
)
@config_option
@json_option
@handle_errors
def demo(
    data_dir: Path | None, prefix: str | None, config_path: Path | None, as_json: bool
) -> None:
    """Run the main job end to end on this machine."""
    console = Console(stderr=as_json)
    settings = build_settings(config_path)
    if settings.storage.endpoint is None:
        try:
            info = EmbeddedStore(settings.storage.data_dir).start()
        except StorageError:
            # The default port is taken (another store, another program).
            info = EmbeddedStore(settings.storage.data_dir, port=0).start()
        console.print(f"object store: embedded SeaweedFS at {info.endpoint}")
    store = ObjectStore.from_settings(settings.storage)
    bucket = settings.storage.bucket
    demo_studies = build_demo_folder(settings.storage.data_dir / "demo-studies")
    source = data_dir.resolve() if data_dir else demo_studies
    if prefix is None:
        prefix = (
            "demo"
            if data_dir is None
            else "data-" + hashlib.sha256(str(source).encode()).hexdigest()[:8]
        )
    url = f"s3://{bucket}/{prefix.strip('/')}/"
    report = ingest_folder(store, source, url)
    console.print(f"ingested {source} -> {url}: {report.to_dict()}")
    model = _ensure_model(settings, store, demo_studies, console)
    summary = run_job(settings, url, model)
    if as_json:
        echo_json(summary.to_dict())
    else:
        print_summary(summary, console)
        if summary.errors:
            why = (
                "the demo data holds broken and non-image files on purpose"
                if data_dir is None
                else "each names the object and the reason"
            )
            console.print(
                f"{len(summary.errors)} error records ({why}): "
                f"s3://{bucket}/{summary.report_prefix}errors.jsonl"
            )
    sys.exit(0)
