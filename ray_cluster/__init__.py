"""medray's cluster layer: object storage, Ray jobs, Serve, CLI and Python API.

The Python API mirrors the CLI::

    import ray_cluster as medray
    medray.catalog("s3://bucket/prefix/")
    medray.run("s3://bucket/prefix/", model="reference")

Names are imported on first use, so that light commands (``medray store``) do
not pay for importing Ray and PyTorch.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray_cluster.api import (
        connect_store,
        inspect_source,
        load_results,
        open_study,
        run,
        study_inputs,
    )
    from ray_cluster.config import Settings, load_settings
    from ray_cluster.datasets import StudyDataset
    from ray_cluster.errors import (
        CatalogError,
        ClusterError,
        ConfigError,
        JobError,
        ObjectNotFoundError,
        ServeError,
        StorageError,
    )
    from ray_cluster.job import JobSummary

_WHERE = {
    "connect_store": "api",
    "inspect_source": "api",
    "load_results": "api",
    "open_study": "api",
    "run": "api",
    "study_inputs": "api",
    "Settings": "config",
    "load_settings": "config",
    "StudyDataset": "datasets",
    "CatalogError": "errors",
    "ClusterError": "errors",
    "ConfigError": "errors",
    "JobError": "errors",
    "ObjectNotFoundError": "errors",
    "ServeError": "errors",
    "StorageError": "errors",
    "JobSummary": "job",
}

__all__ = [
    "CatalogError",
    "ClusterError",
    "ConfigError",
    "JobError",
    "JobSummary",
    "ObjectNotFoundError",
    "ServeError",
    "Settings",
    "StorageError",
    "StudyDataset",
    "catalog",
    "connect_store",
    "inspect_source",
    "load_results",
    "load_settings",
    "open_study",
    "run",
    "study_inputs",
]


# The submodule `ray_cluster.catalog` is imported first so that the function
# below, not the module, is what `ray_cluster.catalog` names from then on.
import ray_cluster.catalog as _catalog_module  # noqa: E402


def catalog(
    url: str, settings: Settings | None = None, *, rebuild: bool = False
) -> _catalog_module.Catalog:
    """Catalogue a prefix (incrementally) and return it; see `api.catalog`."""
    from ray_cluster.api import catalog as build

    return build(url, settings, rebuild=rebuild)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ray_cluster' has no attribute {name!r}")
    module = importlib.import_module(f"ray_cluster.{_WHERE[name]}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


logging.getLogger(__name__).addHandler(logging.NullHandler())
