"""``medray ingest LOCAL_DIR s3://bucket/prefix``: upload a folder of studies."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from ray_cluster.cli._common import (
    EXIT_SOME_FAILED,
    build_settings,
    config_option,
    echo_json,
    handle_errors,
    json_option,
)
from ray_cluster.ingest import _walk, ingest_folder
from ray_cluster.storage import ObjectStore, S3Url

__all__ = ["ingest"]


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None] | None]:
    """Yield a per-file callback drawing a bar on stderr, or None off a TTY."""
    if not sys.stderr.isatty():
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("uploading", total=total)
        yield lambda _size: bar.advance(task)


@click.command("ingest")
@click.argument(
    "local_dir", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.argument("url")
@config_option
@json_option
@click.option(
    "--threads",
    type=click.IntRange(1, 128),
    default=None,
    help="Parallel uploads (default: storage.threads).",
)
@handle_errors
def ingest(
    local_dir: Path,
    url: str,
    config_path: Path | None,
    as_json: bool,
    threads: int | None,
) -> None:
    """Upload LOCAL_DIR to URL under keys derived from content, not file names.

    DICOM files go to <prefix>/<study key>/<series key>/; anything else to
    <prefix>/_unsorted/. Objects already present with the same content are
    skipped, so running it again uploads nothing.
    """
    target = S3Url.parse(url)
    settings = build_settings(config_path, {"storage": {"threads": threads}})
    store = ObjectStore.from_settings(settings.storage)
    with _progress(len(_walk(local_dir))) as on_file:
        report = ingest_folder(store, local_dir, target, on_file=on_file)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(
            f"{report.files} files: {report.uploaded} uploaded "
            f"({report.bytes_uploaded / 1e6:.1f} MB), {report.skipped_same} already "
            f"there, {report.unsorted} under _unsorted/, {report.failed} failed "
            f"in {report.seconds:.1f} s"
        )
    if report.failed:
        sys.exit(EXIT_SOME_FAILED)
