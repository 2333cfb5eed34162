"""Fixtures for the pipelines tests: the shared corpus and pitfall set."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"

Objects = list[tuple[str, bytes]]


def _require(path: Path) -> Path:
    if path.is_dir():
        return path
    message = f"shared test data not found at {path.resolve()}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this is an error)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared public data (``../shared/data``)."""
    return _require(SHARED_DATA)


def read_objects(folder: Path) -> Objects:
    """Return ``(key, bytes)`` for every file under ``folder`` (keys relative)."""
    return [
        (str(p.relative_to(folder)), p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


@pytest.fixture(scope="session")
def corpus(shared_data: Path) -> Callable[[str], Objects]:
    """Load one folder of ``dicom/`` as ``(key, bytes)`` pairs."""

    def load(name: str) -> Objects:
        return read_objects(_require(shared_data / "dicom" / name))

    return load


@pytest.fixture(scope="session")
def pitfall(shared_data: Path) -> Callable[[str], Objects]:
    """Load one folder of ``pitfalls/`` as ``(key, bytes)`` pairs."""

    def load(name: str) -> Objects:
        return read_objects(_require(shared_data / "pitfalls" / name))

    return load
