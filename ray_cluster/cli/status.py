"""``medray status``: jobs and results of a bucket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Column, Table

from ray_cluster.cli._common import (
    build_settings,
    config_option,
    echo_json,
    handle_errors,
    json_option,
)
from ray_cluster.errors import ConfigError
from ray_cluster.storage import ObjectStore, S3Url

__all__ = ["status"]


def _manifests(store: ObjectStore, bucket: str, prefix: str) -> list[dict[str, Any]]:
    jobs = []
    for info in store.list(bucket, f"{prefix}/jobs/"):
        if info.key.endswith("/manifest.json"):
            jobs.append(json.loads(store.get(bucket, info.key)))
    return sorted(jobs, key=lambda m: str(m.get("job_id")))


def _under(job_url: str, target: S3Url) -> bool:
    """Whether a job's ``s3://`` URL is the target's folder or one under it."""
    try:
        job = S3Url.parse(job_url)
    except ConfigError:
        return False
    return job.bucket == target.bucket and f"{job.prefix}/".startswith(target.folder)


@click.command()
@click.argument("url")
@click.option("--last", type=int, default=10, show_default=True, help="Jobs to show.")
@config_option
@json_option
@handle_errors
def status(url: str, last: int, config_path: Path | None, as_json: bool) -> None:
    """Show the latest jobs over s3://BUCKET/PREFIX (and the folders under it).

    s3://BUCKET alone shows every job of the bucket.
    """
    settings = build_settings(config_path)
    target = S3Url.parse(url)
    store = ObjectStore.from_settings(settings.storage)
    prefix = settings.inference.results_prefix.strip("/")
    jobs = [
        j
        for j in _manifests(store, target.bucket, prefix)
        if _under(str(j.get("url", "")), target)
    ][-last:]
    if as_json:
        echo_json(
            [
                {
                    "job_id": j["job_id"],
                    "url": j["url"],
                    "model": j["model"],
                    **j["counts"],
                }
                for j in jobs
            ]
        )
        return
    table = Table(
        Column("job", overflow="fold"),
        Column("prefix", overflow="fold"),
        "model",
        "ok",
        "failed",
        "done before",
        "rejected",
        "s",
    )
    for job in jobs:
        counts = job["counts"]
        table.add_row(
            job["job_id"],
            job["url"],
            f"{job['model']['name']} {job['model']['sha256'][:12]}",
            str(counts.get("studies_ok")),
            str(counts.get("studies_failed")),
            str(counts.get("studies_already_done")),
            str(counts.get("objects_rejected")),
            str(counts.get("seconds")),
        )
    Console().print(table)
