"""The public API of `models` and its boundaries."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import models


def test_all_names_exist_and_are_unique() -> None:
    assert len(set(models.__all__)) == len(models.__all__)
    for name in models.__all__:
        assert hasattr(models, name), name


def test_package_logger_has_only_a_null_handler() -> None:
    handlers = logging.getLogger("models").handlers

    assert [type(h) for h in handlers] == [logging.NullHandler]


def test_modules_import_neither_ray_nor_pipelines() -> None:
    package = Path(models.__file__).parent
    imported: set[str] = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])

    assert "torch" in imported
    assert not imported & {"ray", "pipelines", "ray_cluster"}
