"""Fixtures shared by the whole suite: the embedded S3 server, buckets, env, data."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ray_cluster.config import InferenceSettings, Settings, StorageSettings
from ray_cluster.embedded import EmbeddedStore, StoreInfo
from ray_cluster.errors import ClusterError
from ray_cluster.storage import ObjectStore

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass(frozen=True)
class S3Server:
    """A running ``weed mini`` on loopback, and settings that reach it."""

    endpoint: str
    access_key: str
    secret_key: str
    settings: Settings
    info: StoreInfo

    def store(self) -> ObjectStore:
        """Return a client of this server."""
        return ObjectStore.from_settings(self.settings.storage, env={})


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """Start the embedded store on free loopback ports for the session."""
    data_dir = tmp_path_factory.mktemp("s3-server")
    embedded = EmbeddedStore(data_dir, port=0)
    try:
        info = embedded.start()
    except ClusterError as exc:
        pytest.fail(f"cannot start the embedded S3 server: {exc}")
    try:
        storage = StorageSettings(
            endpoint=info.endpoint,
            access_key=info.access_key,
            secret_key=info.secret_key,
            data_dir=data_dir,
        )
        yield S3Server(
            endpoint=info.endpoint,
            access_key=info.access_key.get_secret_value(),
            secret_key=info.secret_key.get_secret_value(),
            settings=Settings(
                storage=storage,
                inference=InferenceSettings(cache_dir=data_dir / "model-cache"),
            ),
            info=info,
        )
    finally:
        embedded.stop()


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    """Create a fresh bucket; empty it afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    store = s3_server.store()
    store.ensure_bucket(name)
    yield name
    store.delete_prefix(name, "")


_OUR_LOGGERS = ("ray_cluster", "pipelines", "models", "py.warnings")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo handlers that a CLI test's `configure_logging` attached."""
    saved = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).level,
            logging.getLogger(name).propagate,
        )
        for name in _OUR_LOGGERS
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    logging.captureWarnings(False)


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return ``../shared/data`` (public corpus and pitfalls) next to the repo.

    Skips without it, except under CI (env ``CI`` set), where it fails.
    """
    if not SHARED_DATA.is_dir():
        message = f"shared test data not found at {SHARED_DATA}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: the data must be present)")
        pytest.skip(message)
    return SHARED_DATA
