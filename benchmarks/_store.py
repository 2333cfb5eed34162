"""A private embedded S3 server for one benchmark run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray_cluster.config import Settings, load_settings
from ray_cluster.embedded import EmbeddedStore


def start_private_store(
    root: Path, extra: dict[str, dict[str, Any]] | None = None
) -> tuple[EmbeddedStore, Settings]:
    """Start a store under ``root`` on free ports; return it and settings for it.

    Its keys go into this process's environment, from which a local Ray's
    workers inherit them. The caller stops the store.
    """
    store = EmbeddedStore(root / "s3", port=0)
    info = store.start()
    os.environ["MEDRAY_STORAGE__ACCESS_KEY"] = info.access_key.get_secret_value()
    os.environ["MEDRAY_STORAGE__SECRET_KEY"] = info.secret_key.get_secret_value()
    overrides: dict[str, dict[str, Any]] = {
        "storage": {"endpoint": info.endpoint, "data_dir": str(root / "s3")},
        "inference": {"cache_dir": str(root / "cache")},
    }
    for section, fields in (extra or {}).items():
        overrides.setdefault(section, {}).update(fields)
    return store, load_settings(overrides=overrides)
