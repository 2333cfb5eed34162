"""``medray run``: a model over every study under a prefix."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ray_cluster.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    build_settings,
    config_option,
    echo_json,
    handle_errors,
    json_option,
)
from ray_cluster.errors import ObjectNotFoundError
from ray_cluster.job import JobProgress, JobSummary, run_job
from ray_cluster.registry import ModelRegistry
from ray_cluster.storage import ObjectStore, S3Url

__all__ = ["print_summary", "run"]


def print_summary(summary: JobSummary, console: Console) -> None:
    """Print a short human summary of a job on stdout."""
    console.print(
        f"job {summary.job_id}: {summary.studies_ok} studies with results, "
        f"{summary.studies_failed} failed, {summary.studies_already_done} already "
        f"done (of {summary.studies_total}); {summary.objects_rejected} objects "
        f"rejected, {summary.objects_skipped} skipped without pixels; "
        f"{summary.seconds:.1f} s"
    )
    console.print(f"results: {summary.results_prefix}")
    shown = summary.errors[:10]
    for error in shown:
        where = error.get("key") or error.get("study_key")
        console.print(
            f"  error {error.get('code')}: {where}", highlight=False, soft_wrap=True
        )
    if len(summary.errors) > len(shown):
        more = len(summary.errors) - len(shown)
        console.print(f"  ... {more} more in {summary.report_prefix}errors.jsonl")


@click.command()
@click.argument("url")
@click.option("--model", "model", default=None, help="Model name in the registry.")
@click.option("--model-version", default=None, help="Model version (default: latest).")
@click.option(
    "--address",
    envvar="MEDRAY_CLUSTER__ADDRESS",
    default=None,
    help="Ray cluster: 'auto' or ray://HOST:PORT; unset starts a local Ray.",
)
@click.option("--redo", is_flag=True, help="Recompute studies that have a result.")
@click.option("--limit", type=int, default=None, help="Process at most N studies.")
@click.option("--job-id", default=None, help="Job id (default: a new one).")
@config_option
@json_option
@click.pass_context
@handle_errors
def run(
    ctx: click.Context,
    url: str,
    model: str | None,
    model_version: str | None,
    address: str | None,
    redo: bool,
    limit: int | None,
    job_id: str | None,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Run a model over every study under s3://BUCKET/PREFIX.

    Results go to s3://BUCKET/<results prefix>/<model>/<sha256>/<study key>.json;
    studies that already have one are skipped. Exit 0 when every study and object
    succeeded, 1 when some failed, 2 on usage or configuration errors.
    """
    settings = build_settings(
        config_path,
        {"cluster": {"address": address}, "inference": {"model": model}},
    )
    name = settings.inference.model
    if not name:
        click.echo("medray run: give --model NAME (see `medray models list`)", err=True)
        sys.exit(EXIT_USAGE)
    S3Url.parse(url)  # a malformed URL is a usage error: exit 2 before any I/O
    try:
        store = ObjectStore.from_settings(settings.storage)
        ModelRegistry(store, settings).get_card(name, model_version)
    except ObjectNotFoundError as exc:
        click.echo(f"medray run: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    root = ctx.find_root().params
    log_level = str(root.get("log_level") or "WARNING")
    console = Console(stderr=True)
    show_bar = console.is_terminal and not as_json
    with Progress(
        TextColumn("[bold]studies"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not show_bar,
    ) as bar:
        task = bar.add_task("studies", total=None, failed=0)
        seen: list[JobProgress] = []

        def on_progress(progress: JobProgress) -> None:
            seen[:] = [progress]
            bar.update(
                task,
                total=progress.total,
                completed=progress.done,
                failed=progress.failed,
            )

        try:
            summary = run_job(
                settings,
                url,
                name,
                model_version=model_version,
                job_id=job_id,
                redo=redo,
                limit=limit,
                on_progress=on_progress,
                log_level=log_level,
            )
        except KeyboardInterrupt:
            done = f"{seen[0].done} of {seen[0].total} studies" if seen else "no study"
            click.echo(
                f"medray run: interrupted with {done} done; their results are kept. "
                "Run the same command again to do the rest.",
                err=True,
            )
            sys.exit(EXIT_INTERRUPTED)
    if summary.objects_total == 0:
        click.echo(
            f"medray run: no objects under {summary.url}; check the URL "
            "(or ingest studies with `medray ingest`)",
            err=True,
        )
    if as_json:
        echo_json(summary.to_dict())
    else:
        print_summary(summary, Console())
    sys.exit(summary.exit_code)
