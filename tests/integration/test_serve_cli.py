"""`medray serve` as a user starts it: its own local Ray, direct ingress, Ctrl-C.

The store is found as after `medray store up`: from its data folder, with its
own keys (no endpoint or credentials in the environment).

The other Serve tests deploy onto the session's Ray, where HTTP goes through
Ray's proxy (as on a cluster); this one runs the command in a process of its
own, whose local Ray lets the ingress replica answer HTTP itself.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from models import ModelCard
from ray_cluster._internal.ray_runtime import free_loopback_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "cli-serve-key-0123456789"
READY_DEADLINE_S = 180.0


def _listeners(port: int | None) -> str:
    """TCP listeners (of one port), as ``ss`` shows them ('' without ss)."""
    command = ["ss", "-ltnpH"] + ([f"sport = :{port}"] if port else [])
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


def _wait_served(process: subprocess.Popen[bytes], err_file: Path) -> dict[str, Any]:
    """The JSON line `medray serve --json` prints once the application runs."""
    lines: list[bytes] = []

    def read_line() -> None:
        lines.append(process.stdout.readline() if process.stdout else b"")

    reader = threading.Thread(target=read_line, daemon=True)
    reader.start()
    reader.join(READY_DEADLINE_S)
    if not lines or not lines[0].strip():
        process.kill()
        err = err_file.read_text(errors="replace")[-3000:]
        pytest.fail(f"medray serve did not start (exit {process.wait()}): {err}")
    served: dict[str, Any] = json.loads(lines[0])
    return served


def test_local_serve_answers_through_direct_ingress(
    s3_server: Any, tiny_model: ModelCard, shared_data: Path, tmp_path: Path
) -> None:
    source = shared_data / "dicom" / "xr_dx_chest_highdicom" / "dx_image.dcm"
    body = source.read_bytes()
    header = pydicom.dcmread(source, stop_before_pixels=True)
    patient_data = [
        str(header.PatientName),
        str(header.PatientID),
        str(header.PatientBirthDate),
        str(header.AccessionNumber),
    ]
    port = free_loopback_port()
    # As after `medray store up`: no endpoint or keys, only the store's folder.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_SERVE_", "RAY_ADDRESS", "MEDRAY_", "AWS_"))
    }
    env.update(
        {
            "MEDRAY_STORAGE__DATA_DIR": str(s3_server.settings.storage.data_dir),
            "MEDRAY_INFERENCE__CACHE_DIR": str(tmp_path / "cache"),
            "MEDRAY_CLUSTER__NUM_CPUS": "2",
            "MEDRAY_CLUSTER__OBJECT_STORE_MB": "128",
            "MEDRAY_SERVE__API_KEYS": API_KEY,
            "MEDRAY_TORCH_THREADS": "1",
        }
    )
    command = [sys.executable, "-m", "ray_cluster.cli", "--log-level", "info"]
    command += ["serve", "--model", "tiny", "--json"]
    err_file = tmp_path / "serve.err"
    with err_file.open("wb") as err_out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err_out,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        served = _wait_served(process, err_file)
        assert served["url"] == url
        ready = httpx.get(url + "/readyz", timeout=10, trust_env=False)
        assert ready.status_code == 200, ready.text
        listeners = _listeners(port)
        if listeners:  # the replica itself, not Ray's proxy actor
            assert "ServeRepli" in listeners and "ProxyActor" not in listeners
            assert "127.0.0.1:" in listeners
        # Every replica's own gRPC server too (Serve binds it to [::] by default).
        replicas = [
            line for line in _listeners(None).splitlines() if "ServeRepli" in line
        ]
        for line in replicas:
            local = line.split()[3]
            assert local.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")), line
        headers = {"Content-Type": "application/dicom"}
        refused = httpx.post(
            url + "/v1/models/tiny/predict", content=body, headers=headers
        )
        assert refused.status_code == 401
        answer = httpx.post(
            url + "/v1/models/tiny/predict",
            content=body,
            headers=headers | {"X-API-Key": API_KEY},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["model"]["name"] == "tiny"
        assert result["series"] and result["series"][0]["output"] is not None
    finally:
        if process.poll() is None:  # a service manager's stop
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    err = err_file.read_text(errors="replace")
    assert process.returncode == 0, err[-3000:]
    assert "SIGTERM received" not in err  # no stack dump of Ray's handler
    assert process.stdout is not None
    assert process.stdout.read().strip() == b""  # stdout: the one JSON line
    # The replicas' records reach the console of `medray serve`: the ingress's
    # access line of the predict request, named by study key only.
    assert "POST /v1/models/{name}/predict 200" in err, err[-3000:]
    assert f"study={result['study_key']}" in err
    for value in patient_data:
        found = re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", err)
        assert found is None, "patient data in the service's output"
