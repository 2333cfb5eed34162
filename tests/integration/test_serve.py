"""The Serve application end to end: real local Serve, real S3, real corpus.

The batch job runs first (the module's first fixture), so its Ray actors are
gone before the model replica takes a CPU of the 2-CPU session Ray.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from dicom_factory import CT_IMAGE, dicom_bytes
from pydicom.uid import generate_uid

from models import ModelCard
from pipelines import parse_header, study_key
from ray_cluster._internal.ray_runtime import free_loopback_port
from ray_cluster.client import ClientError, MedrayClient, encode_instances
from ray_cluster.ingest import ingest_folder
from ray_cluster.job import run_job
from ray_cluster.processing import result_key
from ray_cluster.storage import S3Url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "test-key-0123456789abcdef"
RADIOGRAPH = "xr_dx_chest_highdicom"
SERIES = "mr_enhanced_multiframe_siemens_xa10"
#: Above Serve's 4 MiB default for gRPC messages between replicas.
MAX_UPLOAD_MB = 8.0
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def uid_of(path: Path) -> str:
    data = path.read_bytes()
    return parse_header(data, key=path.name, total_size=len(data)).study_uid


@dataclass
class Batch:
    url: S3Url
    results: dict[str, dict[str, Any]]  # study uid -> result of `run_job`


@dataclass
class Service:
    url: str
    batch: Batch
    settings: Any


@pytest.fixture(scope="module")
def batch(
    s3_server: Any,
    ray_local: None,
    tiny_model: ModelCard,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Batch]:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    store = s3_server.store()
    bucket = "serve-" + str(int(time.time()))
    store.ensure_bucket(bucket)
    url = S3Url.parse(f"s3://{bucket}/studies/")
    for name in (RADIOGRAPH, SERIES):
        ingest_folder(store, SHARED_DATA / "dicom" / name, url.child(name))
    summary = run_job(s3_server.settings, url, tiny_model.name)
    assert summary.studies_ok == 2, summary.errors
    results = {}
    for name in (RADIOGRAPH, SERIES):
        uid = uid_of(files_of(SHARED_DATA / "dicom" / name)[0])
        key = result_key("medray-results", tiny_model, study_key(uid))
        results[uid] = json.loads(store.get(bucket, key))
    yield Batch(url=url, results=results)
    store.delete_prefix(bucket, "")


@pytest.fixture(scope="module")
def service(
    s3_server: Any, batch: Batch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    from ray_cluster.serve import deploy, shutdown

    key_file = tmp_path_factory.mktemp("serve-keys") / "keys"
    key_file.write_text(f"# test keys\n{API_KEY}\n", encoding="utf-8")
    serve_settings = s3_server.settings.serve.model_copy(
        update={
            "port": free_loopback_port(),
            "api_key_file": key_file,
            "max_upload_mb": MAX_UPLOAD_MB,
            "min_replicas": 1,
            "max_replicas": 1,
            "server_timing": True,
        }
    )
    settings = s3_server.settings.model_copy(update={"serve": serve_settings})
    deployed = deploy(settings, ["tiny"])
    try:
        yield Service(url=deployed.url, batch=batch, settings=settings)
    finally:
        shutdown()


def same_outputs(served: dict[str, Any], batch: dict[str, Any]) -> None:
    assert served["schema_version"] == batch["schema_version"]
    assert served["model"] == batch["model"]
    assert served["study_uid"] == batch["study_uid"]
    assert served["study_key"] == batch["study_key"]
    assert served["error"] == batch["error"]
    assert len(served["series"]) == len(batch["series"])
    for mine, theirs in zip(served["series"], batch["series"], strict=True):
        for field in ("series_uid", "kind", "shape", "spacing_mm", "warnings"):
            assert mine[field] == theirs[field], field
        assert (mine["output"] is None) == (theirs["output"] is None)
        if mine["output"] is None:
            continue
        assert mine["output"]["label"] == theirs["output"]["label"]
        assert mine["output"]["images_used"] == theirs["output"]["images_used"]
        for label, p in theirs["output"]["probabilities"].items():
            assert mine["output"]["probabilities"][label] == pytest.approx(p, abs=1e-5)


def client(service: Service, key: str | None = API_KEY) -> MedrayClient:
    return MedrayClient(service.url, api_key=key, timeout_s=120)


@pytest.mark.parametrize("folder", [RADIOGRAPH, SERIES])
def test_predict_gives_the_batch_result(
    service: Service, shared_data: Path, folder: str
) -> None:
    paths = files_of(shared_data / "dicom" / folder)
    with client(service) as medray:
        result = medray.predict(paths, model="tiny")
    same_outputs(result, service.batch.results[uid_of(paths[0])])
    assert result["model"]["sha256"]


def _large_instance(size_bytes: int) -> bytes:
    """One uncompressed 16-bit CT-like instance of about ``size_bytes``."""
    side = int((size_bytes / 2) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 4096, (side, side), np.uint16)
    return dicom_bytes(
        generate_uid(),
        sop_class=CT_IMAGE,
        pixels=pixels,
        Modality="CT",
        PixelSpacing=[0.5, 0.5],
    )


def test_predict_takes_uploads_over_serves_grpc_default(service: Service) -> None:
    # Serve's gRPC between replicas refuses messages over 4 MiB by default.
    body = _large_instance(5 * 1024 * 1024)
    assert 4 * 1024 * 1024 < len(body) < MAX_UPLOAD_MB * 1024 * 1024
    with client(service) as medray:
        result = medray.predict([body], model="tiny")
    assert result["error"] is None
    assert result["series"][0]["output"]["images_used"] == 1


def test_predict_says_where_its_time_went(service: Service, shared_data: Path) -> None:
    body = files_of(shared_data / "dicom" / RADIOGRAPH)[0].read_bytes()
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/dicom"}
    with httpx.Client(base_url=service.url, trust_env=False, timeout=60) as http:
        response = http.post("/v1/models/tiny/predict", content=body, headers=headers)
    assert response.status_code == 200
    stages = {}
    for item in response.headers["server-timing"].split(","):
        name, _, duration = item.strip().partition(";dur=")
        stages[name] = float(duration)
    expected = {"read", "split", "model_call", "prepare", "batch_wait", "forward"}
    assert expected | {"finish", "model", "ingress"} == set(stages)
    assert all(v >= 0 for v in stages.values())
    assert stages["ingress"] >= stages["model_call"] >= stages["model"]
    assert stages["model"] >= stages["forward"]


def test_study_reference_job_gives_the_batch_result(
    service: Service, shared_data: Path
) -> None:
    uid = uid_of(files_of(shared_data / "dicom" / SERIES)[0])
    with client(service) as medray:
        started = medray.submit_study("tiny", str(service.batch.url), study_uid=uid)
        assert started["job_id"]
        status = medray.wait(started["job_id"], timeout_s=120)
        assert status["status"] == "done", status
        assert status["progress"] == {"total": 1, "done": 1, "failed": 0}
        same_outputs(status["result"], service.batch.results[uid])

        whole = medray.wait(
            medray.submit_study("tiny", str(service.batch.url))["job_id"]
        )
        assert whole["progress"]["total"] == 2
        by_uid = {r["study_uid"]: r for r in whole["results"]}
        for uid, expected in service.batch.results.items():
            same_outputs(by_uid[uid], expected)

        missing = medray.wait(
            medray.submit_study("tiny", str(service.batch.url), study_uid="1.2.3.4")[
                "job_id"
            ]
        )
        assert missing["status"] == "failed"
        assert missing["error"]["code"] == "study_not_found"


def test_models_health_and_openapi(service: Service) -> None:
    with client(service) as medray:
        cards = medray.models()
        assert [c["name"] for c in cards] == ["tiny"]
        assert medray.ready()
    with httpx.Client(base_url=service.url, trust_env=False) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 200
        assert http.head("/healthz").status_code == 200
        assert http.head("/readyz").status_code == 200
        # A trailing slash is no redirect to an address built from Host.
        slash = http.post(
            "/v1/models/tiny/predict/",
            headers={"X-API-Key": API_KEY, "Host": "elsewhere.example"},
        )
        assert slash.status_code == 404
        assert "location" not in slash.headers
        assert slash.json()["error"]["code"] == "no_such_route"
        spec = http.get("/openapi.json", headers={"X-API-Key": API_KEY}).json()
        assert "/v1/models/{name}/predict" in spec["paths"]
        assert "/v1/studies" in spec["paths"]
        assert http.get("/docs", headers={"X-API-Key": API_KEY}).status_code == 404


ROUTES = [
    ("GET", "/v1/models"),
    ("POST", "/v1/models/tiny/predict"),
    ("POST", "/v1/studies"),
    ("GET", "/v1/jobs/nothing"),
    ("GET", "/openapi.json"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_the_key(service: Service, method: str, path: str) -> None:
    with httpx.Client(base_url=service.url, trust_env=False) as http:
        none = http.request(method, path, content=b"x")
        assert none.status_code == 401
        assert none.headers["www-authenticate"] == "Bearer"
        assert none.json()["error"]["code"] == "missing_api_key"
        wrong = http.request(
            method, path, content=b"x", headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 403
        also_wrong = http.request(
            method, path, headers={"X-API-Key": API_KEY[:-1] + "X"}
        )
        assert also_wrong.status_code == 403


def test_limits_and_bad_bodies(service: Service, shared_data: Path) -> None:
    limit = int(MAX_UPLOAD_MB * 2**20)
    headers = {"X-API-Key": API_KEY}
    predict = "/v1/models/tiny/predict"
    radiograph = files_of(shared_data / "dicom" / RADIOGRAPH)[0].read_bytes()
    series = [p.read_bytes() for p in files_of(shared_data / "dicom" / SERIES)]
    with httpx.Client(base_url=service.url, trust_env=False, timeout=60) as http:
        dicom = {**headers, "Content-Type": "application/dicom"}
        big = http.post(predict, content=b"\0" * (limit + 1), headers=dicom)
        assert big.status_code == 413

        def chunks() -> Iterator[bytes]:
            for _ in range(limit // 65536 + 2):
                yield b"\0" * 65536

        streamed = http.post(predict, content=chunks(), headers=dicom)
        assert streamed.status_code == 413

        text = http.post(
            predict, content=b"hello", headers={**headers, "Content-Type": "text/plain"}
        )
        assert text.status_code == 415
        junk = http.post(predict, content=b"not a dicom file" * 20, headers=dicom)
        assert junk.status_code == 400
        assert "part-0" in junk.json()["error"]["message"]

        body, ctype = encode_instances([radiograph, series[0]])
        two = http.post(
            predict, content=body, headers={**headers, "Content-Type": ctype}
        )
        assert two.status_code == 400
        assert two.json()["error"]["code"] == "several_studies"
        cut = http.post(
            predict,
            content=body[: body.rindex(b"--")],
            headers={**headers, "Content-Type": ctype},
        )
        assert cut.status_code == 400
        assert cut.json()["error"]["code"] == "bad_multipart"

        as_form = http.post(
            predict, headers=headers, files={"file": ("x.dcm", radiograph)}
        )
        assert as_form.status_code == 200
        field = http.post(
            predict,
            headers=headers,
            files={"file": ("x.dcm", radiograph)},
            data={"note": "hello"},
        )
        assert field.status_code == 415

        unknown = http.post(
            "/v1/models/none/predict", content=radiograph, headers=dicom
        )
        assert unknown.status_code == 404

        studies = "/v1/studies"
        as_json = {**headers, "Content-Type": "application/json"}
        assert http.post(studies, content=b"{", headers=as_json).status_code == 400
        bad_url = http.post(
            studies, json={"model": "tiny", "url": "bucket"}, headers=headers
        )
        assert bad_url.status_code == 400
        assert (
            http.post(
                studies, content=b"x", headers={**headers, "Content-Type": "text/plain"}
            )
        ).status_code == 415
        huge = http.post(studies, content=b"{" * (64 * 1024 + 1), headers=as_json)
        assert huge.status_code == 413
        assert http.get("/v1/jobs/unknown", headers=headers).status_code == 404


def test_client_reports_refusals(service: Service) -> None:
    with client(service, key="wrong-key-0123456789") as medray:
        with pytest.raises(ClientError) as info:
            medray.models()
    assert info.value.status == 403
    assert info.value.code == "wrong_api_key"


def test_predict_command(service: Service, shared_data: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ray_cluster.cli.predict import predict

    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n", encoding="utf-8")
    paths = [str(p) for p in files_of(shared_data / "dicom" / RADIOGRAPH)]
    args = [*paths, "--url", service.url, "--model", "tiny"]
    done = CliRunner().invoke(predict, [*args, "--api-key-file", str(key_file)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["model"]["name"] == "tiny"
    refused = CliRunner(env={"MEDRAY_API_KEY": "wrong-key-0123456789"}).invoke(
        predict, args
    )
    assert refused.exit_code == 2
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image\n" * 30, encoding="utf-8")
    bad = CliRunner().invoke(
        predict,
        [paths[0], str(junk), *args[len(paths) :], "--api-key-file", str(key_file)],
    )
    assert bad.exit_code == 1
    # The part is named with its FILE argument's position, never its path.
    assert "part-1 (FILE argument 2) is not a readable DICOM" in bad.stderr
    assert "notes.txt" not in bad.stderr


# Last in the module: it redeploys the service with Ray's batcher.
def test_serve_batch_gives_the_batch_result(
    service: Service, shared_data: Path
) -> None:
    from ray import serve

    from ray_cluster.serve import deploy

    opts = service.settings.serve.model_copy(
        update={"batcher": "ray", "batch_max_size": 4}
    )
    deploy(service.settings.model_copy(update={"serve": opts}), ["tiny"])
    paths = files_of(shared_data / "dicom" / SERIES)
    with client(service) as medray:
        result = medray.predict(paths, model="tiny")
    same_outputs(result, service.batch.results[uid_of(paths[0])])
    handle = serve.get_deployment_handle("model-tiny", app_name="medray")
    info = handle.info.remote().result(timeout_s=60)
    assert info["batcher"] == "ServeBatcher"
    assert info["images"] >= info["batches"] >= 1
