"""The Python API: what the CLI does, callable from a notebook.

Example:
    >>> import ray_cluster as medray
    >>> cat = medray.catalog("s3://studies/2026/")
    >>> summary = medray.run("s3://studies/2026/", model="reference")
    >>> study = medray.open_study("s3://studies/2026/", cat.studies().popitem()[0])
    >>> results = medray.load_results("s3://studies/2026/", model="reference")
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import StudyImages, assemble_study, build_input, study_key
from ray_cluster.catalog import Catalog, build_catalog, ensure_catalog, load_catalog
from ray_cluster.config import Settings, load_settings
from ray_cluster.errors import CatalogError
from ray_cluster.job import JobProgress, JobSummary, run_job
from ray_cluster.processing import model_results_prefix, result_key
from ray_cluster.registry import ModelRegistry
from ray_cluster.sources import read_local_studies
from ray_cluster.storage import ObjectStore, S3Url

__all__ = [
    "catalog",
    "connect_store",
    "inspect_source",
    "iter_study_objects",
    "load_results",
    "open_study",
    "run",
    "study_inputs",
]

logger = logging.getLogger(__name__)


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else load_settings()


def connect_store(settings: Settings | None = None) -> ObjectStore:
    """Return an object store client for the configured (or embedded) store."""
    return ObjectStore.from_settings(_settings(settings).storage)


def catalog(
    url: str, settings: Settings | None = None, *, rebuild: bool = False
) -> Catalog:
    """Catalogue a prefix (incrementally) and return it."""
    settings = _settings(settings)
    target = S3Url.parse(url)
    store = connect_store(settings)
    previous = None if rebuild else load_catalog(store, settings, target)
    return build_catalog(store, settings, target, previous=previous)


def run(
    url: str,
    model: str,
    settings: Settings | None = None,
    *,
    model_version: str | None = None,
    redo: bool = False,
    limit: int | None = None,
    on_progress: Callable[[JobProgress], None] | None = None,
) -> JobSummary:
    """Run a model over every study of a prefix on Ray; see `run_job`."""
    return run_job(
        _settings(settings),
        url,
        model,
        model_version=model_version,
        redo=redo,
        limit=limit,
        on_progress=on_progress,
    )


def _study_keys(catalog: Catalog, study_uid: str) -> list[str]:
    found = catalog.studies()
    if study_uid not in found:
        raise CatalogError(
            f"study {study_key(study_uid)} is not under {catalog.url}; "
            "check the UID or run `medray catalog` on the right prefix",
            key=study_key(study_uid),
        )
    return [h.key for h in found[study_uid]]


def iter_study_objects(
    url: str, study_uid: str, settings: Settings | None = None
) -> list[tuple[str, bytes]]:
    """Fetch every image object of one study under a prefix."""
    settings = _settings(settings)
    target = S3Url.parse(url)
    store = connect_store(settings)
    keys = _study_keys(ensure_catalog(store, settings, target), study_uid)
    return store.get_many(target.bucket, keys)


def open_study(
    source: str | Path, study_uid: str | None = None, settings: Settings | None = None
) -> StudyImages:
    """Decode and assemble one study from a prefix or a local folder.

    Args:
        source: ``s3://bucket/prefix`` or a local folder.
        study_uid: The study; may be omitted when the source holds only one.
        settings: Settings; loaded from the environment when None.

    Returns:
        Series as arrays with their validation reports.
    """
    text = str(source)
    if not text.startswith("s3://"):
        found = read_local_studies(Path(text))
        uid = study_uid or _only(list(found.studies), text)
        return assemble_study(found.studies[uid])
    if study_uid is None:
        settings = _settings(settings)
        target = S3Url.parse(text)
        cat = ensure_catalog(connect_store(settings), settings, target)
        study_uid = _only(list(cat.studies()), text)
    return assemble_study(iter_study_objects(text, study_uid, settings))


def _only(uids: Sequence[str], where: str) -> str:
    if len(uids) != 1:
        raise ValueError(
            f"{where} holds {len(uids)} studies; pass study_uid to choose one"
        )
    return uids[0]


def _study_records(uid: str, images: StudyImages) -> Iterator[dict[str, Any]]:
    key = study_key(uid)
    for series in images.series:
        report = series.report.to_dict()
        used = report.get("instances_used") or []
        yield {
            "study_key": key,
            "study_uid": uid,
            **report,
            "instances_used_count": len(used) if isinstance(used, list) else used,
        }
    for kind, issues in (
        ("skipped_object", images.skipped),
        ("object_error", images.errors),
    ):
        for issue in issues:
            yield {
                "study_key": key,
                "object_key": issue.key,
                "kind": kind,
                "code": issue.code,
                "message": issue.message,
            }


def inspect_source(
    source: str, settings: Settings | None = None
) -> list[dict[str, Any]]:
    """Return series reports and object issues for a local folder or a prefix."""
    records: list[dict[str, Any]] = []
    if source.startswith("s3://"):
        settings = _settings(settings)
        target = S3Url.parse(source)
        store = connect_store(settings)
        cat = ensure_catalog(store, settings, target)
        for uid, headers_of_study in sorted(
            cat.studies().items(), key=lambda item: study_key(item[0])
        ):
            keys = [h.key for h in headers_of_study]
            objects = store.get_many(target.bucket, keys)
            records.extend(_study_records(uid, assemble_study(objects)))
        headers = cat.rejected() + cat.skipped()
    else:
        found = read_local_studies(Path(source))
        for uid, objects in found.studies.items():
            records.extend(_study_records(uid, assemble_study(objects)))
        headers = found.rejected() + found.skipped()
    for header in headers:
        kind = "skipped_object" if header.status == "no_pixels" else "object_error"
        records.append(
            {
                "study_key": header.study_key or None,
                "object_key": header.key,
                "kind": kind,
                "code": header.reason or header.status,
                "message": f"{header.key}: {header.reason or header.status}",
            }
        )
    return records


def load_results(
    url: str,
    model: str,
    settings: Settings | None = None,
    *,
    model_version: str | None = None,
) -> list[dict[str, Any]]:
    """Return the results of a model for the studies under a prefix.

    Results live per bucket, one per study (`result_key`); those of the
    prefix's studies (by its catalog, refreshed as `catalog` does) are
    returned, in the order of their object keys. Studies without a result yet
    are left out.
    """
    settings = _settings(settings)
    target = S3Url.parse(url)
    store = connect_store(settings)
    card = ModelRegistry(store, settings).get_card(model, model_version)
    wanted = {
        result_key(settings.inference.results_prefix, card, study_key(uid))
        for uid in ensure_catalog(store, settings, target).studies()
    }
    prefix = model_results_prefix(settings.inference.results_prefix, card)
    keys = [i.key for i in store.list(target.bucket, prefix) if i.key in wanted]
    return [json.loads(blob) for _, blob in store.get_many(target.bucket, keys)]


def study_inputs(images: StudyImages, spec: dict[str, Any]) -> list[np.ndarray]:
    """Return the model input of every readable series of a study."""
    return [build_input(s, spec) for s in images.series if s.kind in ("volume", "2d")]
