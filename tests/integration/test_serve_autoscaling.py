"""Autoscaling and overload of the model deployment under a bounded local load.

Load: loopback only, a few concurrent clients, stopped by a deadline and a
request budget.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from models import ModelCard
from ray_cluster._internal.ray_runtime import free_loopback_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "autoscale-key-0123456789"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
RADIOGRAPH = SHARED_DATA / "dicom" / "xr_dx_chest_highdicom"
LOAD_DEADLINE_S = 60.0
LOAD_BUDGET = 5000
DOWNSCALE_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def scaling_service(
    s3_server: Any,
    ray_local: None,
    tiny_model: ModelCard,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    from ray_cluster.serve import deploy, shutdown

    if not RADIOGRAPH.is_dir():
        pytest.skip(f"shared test data not found at {RADIOGRAPH}")
    key_file = tmp_path_factory.mktemp("scale-keys") / "keys"
    key_file.write_text(API_KEY + "\n", encoding="utf-8")
    serve_settings = s3_server.settings.serve.model_copy(
        update={
            "port": free_loopback_port(),
            "api_key_file": key_file,
            "min_replicas": 1,
            "max_replicas": 2,
            "target_ongoing_requests": 1.0,
            "metrics_interval_s": 1.0,
            "look_back_period_s": 2.0,
            "upscale_delay_s": 1.0,
            "downscale_delay_s": 3.0,
            "batch_max_size": 2,
            "max_queued_requests": 2,
        }
    )
    settings = s3_server.settings.model_copy(update={"serve": serve_settings})
    deployed = deploy(settings, ["tiny"])
    try:
        yield deployed.url
    finally:
        shutdown()


def _running_replicas() -> int:
    from ray import serve

    app = serve.status().applications["medray"]
    states = app.deployments["model-tiny"].replica_states
    return int(states.get("RUNNING", 0))


def _load(
    url: str, stop: threading.Event, counts: Counter[int], retry: list[str]
) -> None:
    body = next(p for p in RADIOGRAPH.iterdir() if p.is_file()).read_bytes()
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/dicom"}
    with httpx.Client(base_url=url, trust_env=False, timeout=30) as http:
        while not stop.is_set() and sum(counts.values()) < LOAD_BUDGET:
            response = http.post(
                "/v1/models/tiny/predict", content=body, headers=headers
            )
            counts[response.status_code] += 1
            if response.status_code == 503:
                retry.append(
                    response.headers.get("retry-after", "") + " " + response.text[:200]
                )


def test_second_replica_under_load_and_gone_after(scaling_service: str) -> None:
    assert _running_replicas() == 1
    stop = threading.Event()
    counts: Counter[int] = Counter()
    retry: list[str] = []
    workers = [
        threading.Thread(target=_load, args=(scaling_service, stop, counts, retry))
        for _ in range(12)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    try:
        upscaled_after = None
        while time.monotonic() - started < LOAD_DEADLINE_S:
            if _running_replicas() >= 2:
                upscaled_after = time.monotonic() - started
                break
            time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert upscaled_after is not None, f"no second replica within {LOAD_DEADLINE_S} s"
    assert counts[200] > 0
    assert set(counts) <= {200, 503}, counts
    assert counts[503] > 0, "12 clients against a queue of 2 must see fast 503s"
    assert all(r.startswith("1 ") for r in retry), retry[:5]
    assert any("overloaded" in r for r in retry), "the model queue must fill first"

    idle = time.monotonic()
    while time.monotonic() - idle < DOWNSCALE_DEADLINE_S:
        if _running_replicas() == 1:
            break
        time.sleep(0.5)
    assert _running_replicas() == 1, "the second replica did not go after the load"
