"""``medray models``: the model registry in the bucket."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from models import ModelCard
from ray_cluster.cli._common import (
    build_settings,
    config_option,
    echo_json,
    handle_errors,
    json_option,
)
from ray_cluster.registry import ModelRegistry
from ray_cluster.storage import ObjectStore
from ray_cluster.training import train_from_folder

__all__ = ["models"]


@click.group()
def models() -> None:
    """List, show, push and train models in the registry."""


@models.command("list")
@config_option
@json_option
@handle_errors
def list_models(config_path: Path | None, as_json: bool) -> None:
    """List the models in the registry."""
    settings = build_settings(config_path)
    cards = ModelRegistry(
        ObjectStore.from_settings(settings.storage), settings
    ).list_cards()
    if as_json:
        echo_json(
            [
                {
                    "name": c.name,
                    "version": c.version,
                    "sha256": c.sha256,
                    "labels": c.labels,
                }
                for c in cards
            ]
        )
        return
    table = Table("name", "version", "sha256", "labels", "held-out accuracy")
    for card in cards:
        accuracy = card.metrics.get("eval_accuracy")
        table.add_row(
            card.name,
            card.version,
            card.sha256[:12],
            ", ".join(card.labels),
            "-" if accuracy is None else f"{accuracy:.3f}",
        )
    Console().print(table)


@models.command("show")
@click.argument("name")
@click.option("--version", default=None, help="Version (default: latest).")
@config_option
@handle_errors
def show(name: str, version: str | None, config_path: Path | None) -> None:
    """Print a model's card as JSON."""
    settings = build_settings(config_path)
    card = ModelRegistry(
        ObjectStore.from_settings(settings.storage), settings
    ).get_card(name, version)
    click.echo(card.to_json())


@models.command("push")
@click.argument(
    "card_path", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.argument(
    "weights_path", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@config_option
@handle_errors
def push(card_path: Path, weights_path: Path, config_path: Path | None) -> None:
    """Push a card and its weights (safetensors) to the registry."""
    settings = build_settings(config_path)
    card = ModelCard.from_json(card_path.read_text(encoding="utf-8"))
    registry = ModelRegistry(ObjectStore.from_settings(settings.storage), settings)
    click.echo(registry.push(card, weights_path))


@models.command("train-reference")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reference-model"),
    show_default=True,
    help="Where to write weights and card.",
)
@click.option("--epochs", type=int, default=12, show_default=True)
@click.option("--image-size", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", default="reference", show_default=True)
@click.option("--version", "model_version", default="1", show_default=True)
@click.option(
    "--push/--no-push", default=True, show_default=True, help="Push to the registry."
)
@config_option
@json_option
@handle_errors
def train_reference_command(
    folder: Path,
    out_dir: Path,
    epochs: int,
    image_size: int,
    seed: int,
    name: str,
    model_version: str,
    push: bool,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Train the reference series classifier on FOLDER (labels from headers).

    A demonstration model, not for clinical use.
    """
    settings = build_settings(config_path)
    trained = train_from_folder(
        folder,
        out_dir,
        epochs=epochs,
        image_size=image_size,
        seed=seed,
        name=name,
        version=model_version,
    )
    url = None
    if push:
        registry = ModelRegistry(ObjectStore.from_settings(settings.storage), settings)
        url = registry.push(trained.card, trained.weights_path)
    card = trained.card
    if as_json:
        echo_json(
            {
                "name": card.name,
                "version": card.version,
                "sha256": card.sha256,
                "metrics": card.metrics,
                "split": card.split,
                "registry": url,
            }
        )
        return
    console = Console()
    console.print(
        f"trained {card.name} {card.version} ({card.sha256[:12]}): {card.metrics}"
    )
    console.print(f"weights: {trained.weights_path}")
    if url:
        console.print(f"pushed: {url}")
