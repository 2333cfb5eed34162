"""Layers point one way, and every `__all__` names what the package has."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["ray_cluster", "pipelines", "models"]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_true(package: str) -> None:
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert names == sorted(set(names), key=names.index), "duplicates in __all__"
    for name in names:
        assert getattr(module, name) is not None, name


@pytest.mark.parametrize("package", ["pipelines", "models"])
def test_lower_layers_never_import_ray(package: str) -> None:
    code = (
        f"import sys, {package}; "
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.') "
        "or m.startswith('ray_cluster')); print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == ""


def test_pipelines_does_not_import_models_or_torch() -> None:
    code = (
        "import sys, pipelines; "
        "print(','.join(m for m in ('models', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == ""


def test_light_cli_commands_do_not_import_torch() -> None:
    code = (
        "import sys; from ray_cluster.cli.main import cli; "
        "cli.get_command(None, 'store'); "
        "print(','.join(m for m in ('torch', 'ray') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == ""
