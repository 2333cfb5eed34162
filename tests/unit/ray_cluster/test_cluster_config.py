"""cluster.yaml passes Ray's launcher validation; the KubeRay manifest has what
medray relies on; neither holds a secret."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[3]
LAUNCHER = ROOT / "cluster.yaml"
KUBERAY = ROOT / "deploy" / "kuberay" / "raycluster.yaml"

#: Variables that carry secrets; they must never have a literal value.
SECRET_NAMES = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
#: Shapes of secrets (AWS key ids, long hex or base64 runs) in file text.
SECRET_SHAPES = re.compile(
    r"AKIA[0-9A-Z]{16}|\b[0-9a-f]{32,}\b|[A-Za-z0-9+/]{40,}={0,2}"
)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    return _load(LAUNCHER)


@pytest.fixture(scope="module")
def kuberay() -> dict[str, Any]:
    return _load(KUBERAY)


# --- cluster.yaml ---------------------------------------------------------


def test_launcher_config_passes_ray_validation(launcher: dict[str, Any]) -> None:
    prepared = prepare_config(copy.deepcopy(launcher))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"


def test_launcher_has_head_cpu_and_gpu_types(launcher: dict[str, Any]) -> None:
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types
    head = types[launcher["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "actors must not land on the head"
    cpu, gpu = types["cpu"], types["gpu"]
    assert cpu["resources"].get("medray_cpu", 0) > 0
    assert gpu["resources"].get("GPU", 0) > 0
    assert "medray_cpu" not in gpu["resources"]
    for worker in (cpu, gpu):
        assert worker["min_workers"] == 0
        assert worker["max_workers"] > 0
    assert launcher["max_workers"] >= cpu["max_workers"] + gpu["max_workers"]
    assert 0 < launcher["idle_timeout_minutes"] <= 30


def test_launcher_installs_medray(launcher: dict[str, Any]) -> None:
    setup = " ".join(launcher["setup_commands"])
    assert "pip install" in setup and "medray" in setup
    assert "requirements.lock" in setup


def _start_commands(launcher: dict[str, Any]) -> list[str]:
    return [
        c
        for c in launcher["head_start_ray_commands"]
        + launcher["worker_start_ray_commands"]
        if "ray start" in c
    ]


def test_launcher_turns_token_auth_on_every_node(launcher: dict[str, Any]) -> None:
    starts = _start_commands(launcher)
    assert len(starts) == 2
    for command in starts:
        assert "RAY_AUTH_MODE=token" in command
        assert "/etc/medray/env" in command, "token and keys come from the env file"
        assert "set -a" in command, "the env file must be exported to ray start"


def test_launcher_keeps_dashboard_private(launcher: dict[str, Any]) -> None:
    text = LAUNCHER.read_text(encoding="utf-8")
    assert "0.0.0.0" not in text
    head = launcher["head_start_ray_commands"][-1]
    assert "--dashboard-host=127.0.0.1" in head
    assert launcher["provider"]["use_internal_ips"] is True
    for node_type in launcher["available_node_types"].values():
        groups = node_type["node_config"].get("SecurityGroupIds")
        assert groups, "use your own security group, not Ray's (SSH open to all)"


def test_launcher_holds_no_secret(launcher: dict[str, Any]) -> None:
    text = LAUNCHER.read_text(encoding="utf-8")
    assert not SECRET_SHAPES.search(text)
    for line in text.splitlines():
        for name in re.findall(r"\b([A-Z_]+)=\S+", line):
            if SECRET_NAMES.search(name):
                pytest.fail(f"cluster.yaml assigns {name} a literal value")
    assert "secretsmanager get-secret-value" in " ".join(launcher["setup_commands"])


# --- deploy/kuberay/raycluster.yaml ---------------------------------------


def _containers(kuberay: dict[str, Any]) -> list[dict[str, Any]]:
    spec = kuberay["spec"]
    pods = [spec["headGroupSpec"]["template"]] + [
        g["template"] for g in spec["workerGroupSpecs"]
    ]
    return [c for pod in pods for c in pod["spec"]["containers"]]


def _groups(kuberay: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in kuberay["spec"]["workerGroupSpecs"]}


def test_manifest_is_a_raycluster_for_this_ray(kuberay: dict[str, Any]) -> None:
    assert kuberay["apiVersion"] == "ray.io/v1"
    assert kuberay["kind"] == "RayCluster"
    assert kuberay["metadata"]["name"]
    assert kuberay["spec"]["rayVersion"] == ray.__version__
    images = {c["image"] for c in _containers(kuberay)}
    assert len(images) == 1, "head and workers must run the same image"


def test_manifest_autoscales_cpu_and_gpu_groups(kuberay: dict[str, Any]) -> None:
    spec = kuberay["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert 0 < spec["autoscalerOptions"]["idleTimeoutSeconds"] <= 1800
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = _groups(kuberay)
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        assert group["minReplicas"] == 0
        assert group["maxReplicas"] > 0
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert "medray_cpu" in groups["cpu"]["rayStartParams"]["resources"]
    gpu = groups["gpu"]
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"


def test_manifest_turns_token_auth_on_everywhere(kuberay: dict[str, Any]) -> None:
    holders = [*_containers(kuberay), kuberay["spec"]["autoscalerOptions"]]
    for holder in holders:
        env = {e["name"]: e for e in holder["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        token = env["RAY_AUTH_TOKEN"]
        assert "value" not in token
        assert token["valueFrom"]["secretKeyRef"]["name"]


def test_manifest_takes_storage_keys_from_a_secret(kuberay: dict[str, Any]) -> None:
    for container in _containers(kuberay):
        refs = [s["secretRef"]["name"] for s in container.get("envFrom", [])]
        assert "medray-storage" in refs
        for entry in container["env"]:
            if SECRET_NAMES.search(entry["name"]):
                assert "value" not in entry, f"{entry['name']} has a literal value"


def test_manifest_keeps_control_plane_private(kuberay: dict[str, Any]) -> None:
    head = kuberay["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    text = KUBERAY.read_text(encoding="utf-8")
    assert "0.0.0.0" not in text and "LoadBalancer" not in text
    assert not SECRET_SHAPES.search(text)
