"""API keys, request bodies and time bounds of the HTTP service, without Ray."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dicom_factory import BASIC_TEXT_SR, dicom_bytes
from pydicom.uid import generate_uid

from pipelines import StudyImages, assemble_study
from ray_cluster.client import encode_instances, read_api_key
from ray_cluster.config import ServeSettings, load_settings
from ray_cluster.errors import ConfigError
from ray_cluster.serve.auth import ENV_API_KEYS, ApiKeys, KeyCheck, presented_key
from ray_cluster.serve.uploads import (
    RequestRejected,
    body_kind,
    read_limited,
    split_parts,
    vet_upload,
)

KEY = "k" * 20


def test_keys_come_from_file_env_and_settings(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"# comment\n\n{'a' * 16}\n", encoding="utf-8")
    serve = ServeSettings(api_key_file=key_file, api_keys=(KEY,))  # type: ignore[arg-type]
    keys = ApiKeys.load(serve, env={ENV_API_KEYS: '["' + "b" * 16 + '"]'})
    assert len(keys) == 3
    assert keys.check("a" * 16) is KeyCheck.OK
    assert keys.check("b" * 16) is KeyCheck.OK
    assert keys.check(KEY) is KeyCheck.OK
    assert keys.check(KEY[:-1]) is KeyCheck.WRONG
    assert keys.check(None) is KeyCheck.MISSING
    assert KEY not in repr(keys)


def test_no_key_or_short_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no API key"):
        ApiKeys.load(ServeSettings(), env={})
    with pytest.raises(ConfigError, match="shorter"):
        ApiKeys.load(ServeSettings(), env={ENV_API_KEYS: "short"})
    with pytest.raises(ConfigError, match="API key file"):
        ApiKeys.load(ServeSettings(api_key_file=tmp_path / "none"), env={})


def test_env_keys_parse_as_comma_list_in_settings() -> None:
    settings = load_settings(env={ENV_API_KEYS: f"{KEY},{'z' * 16}"})
    assert len(settings.serve.api_keys) == 2
    assert KEY not in settings.model_dump_json()


def test_presented_key_reads_bearer_or_header() -> None:
    assert presented_key({"authorization": f"Bearer {KEY}"}) == KEY
    assert presented_key({"authorization": f"bearer  {KEY} "}) == KEY
    assert presented_key({"x-api-key": KEY}) == KEY
    assert presented_key({"authorization": f"Basic {KEY}"}) is None
    assert presented_key({}) is None


def test_content_types() -> None:
    assert body_kind("application/dicom") == ("dicom", b"")
    kind, boundary = body_kind(
        'multipart/related; type="application/dicom"; boundary=xy'
    )
    assert (kind, boundary) == ("multipart", b"xy")
    for bad in ("text/plain", None):
        with pytest.raises(RequestRejected) as info:
            body_kind(bad)
        assert info.value.status == 415
    with pytest.raises(RequestRejected) as unframed:
        body_kind("multipart/related")  # accepted type, but no boundary
    assert (unframed.value.status, unframed.value.code) == (400, "no_boundary")


async def _stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def test_size_limit_on_declared_and_streamed_size() -> None:
    async def read(chunks: list[bytes], declared: str | None) -> bytes:
        return await read_limited(_stream(chunks), declared, limit=10)

    assert asyncio.run(read([b"12345", b"678"], "8")) == b"12345678"
    for chunks, declared in (([b"x"], "11"), ([b"123456", b"789012"], None)):
        with pytest.raises(RequestRejected) as info:
            asyncio.run(read(chunks, declared))
        assert info.value.status == 413
    with pytest.raises(RequestRejected) as bad:
        asyncio.run(read([b"x"], "ten"))
    assert bad.value.status == 400


def _instance(study_uid: str, *, pixels: bytes = bytes(16)) -> bytes:
    """A 4x4 8-bit image of ``study_uid``; short ``pixels`` cannot be decoded."""
    return dicom_bytes(study_uid, pixels=pixels, shape=(4, 4), Modality="OT")


def test_multipart_round_trip_and_study_checks() -> None:
    study = generate_uid()
    first, second = _instance(study), _instance(study)
    body, content_type = encode_instances([first, second])
    kind, boundary = body_kind(content_type)
    parts = split_parts(body, kind, boundary)
    assert parts == [first, second]

    uid, images = _vet([first, second])
    assert uid == study
    assert sum(s.array.shape[0] for s in images.series) == 2

    with pytest.raises(RequestRejected, match="2 studies"):
        _vet([first, _instance(generate_uid())])
    with pytest.raises(RequestRejected, match="part-1 is not a readable DICOM"):
        _vet([first, b"\0" * 300])


def _report(study_uid: str) -> bytes:
    """A Basic Text SR instance: no pixel data, and not an image."""
    return dicom_bytes(study_uid, sop_class=BASIC_TEXT_SR, Modality="SR")


def _vet(parts: list[bytes]) -> tuple[str, StudyImages]:
    objects = [(f"part-{i}", data) for i, data in enumerate(parts)]
    return vet_upload(objects, assemble_study(objects))


def test_upload_rules_match_the_catalog() -> None:
    study = generate_uid()
    image = _instance(study)
    # An instance without pixels (a report, say) is left out, as the catalog
    # leaves it out of the batch job's study.
    uid, images = _vet([image, _report(study)])
    assert uid == study and images.skipped == [] and images.errors == []
    # An image whose pixels cannot be decoded (too few bytes) stays in the
    # study's errors, as in the batch job, and its study still counts.
    uid, images = _vet([image, _instance(study, pixels=bytes(8))])
    assert uid == study
    assert [e.key for e in images.errors] == ["part-1"]
    with pytest.raises(RequestRejected, match="2 studies"):
        _vet([image, _instance(generate_uid(), pixels=bytes(8))])
    with pytest.raises(RequestRejected) as none:
        _vet([_report(study)])
    assert none.value.code == "no_image"
    with pytest.raises(RequestRejected) as anonymous:
        _vet([_instance("")])
    assert anonymous.value.code == "no_study_uid"


def test_multipart_refuses_other_parts_and_garbage() -> None:
    body = b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    with pytest.raises(RequestRejected) as info:
        split_parts(body, "multipart", b"b")
    assert info.value.status == 415
    with pytest.raises(RequestRejected) as empty:
        split_parts(b"nothing here", "multipart", b"b")
    assert empty.value.status == 400
    field = (
        b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--b--\r\n'
    )
    with pytest.raises(RequestRejected, match="form field") as form_field:
        split_parts(field, "multipart", b"b")
    assert form_field.value.status == 415
    with pytest.raises(RequestRejected) as declared:
        body_kind('multipart/related; type="application/json"; boundary=b')
    assert declared.value.status == 415


def test_a_body_cut_short_loses_no_part_unnoticed() -> None:
    study = generate_uid()
    body, content_type = encode_instances([_instance(study), _instance(study)])
    kind, boundary = body_kind(content_type)
    closing = body.rindex(b"--" + boundary)
    # Without the closing boundary, cut inside the last part, cut inside the first.
    for cut in (body[:closing], body[: closing - 50], body[: len(body) // 4]):
        with pytest.raises(RequestRejected, match="closing boundary") as info:
            split_parts(cut, kind, boundary)
        assert info.value.status == 400
        assert info.value.code == "bad_multipart"


def test_client_reads_key_from_file_or_env(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("# mine\n" + KEY + "\n", encoding="utf-8")
    assert read_api_key(path) == KEY
    assert read_api_key(None, env={"MEDRAY_API_KEY": KEY}) == KEY
    assert read_api_key(None, env={}) is None


class _SlowResponse:
    def __init__(self) -> None:
        self.cancelled = False

    def __await__(self) -> Any:
        return asyncio.sleep(10).__await__()

    def cancel(self) -> None:
        self.cancelled = True


def test_slow_model_answers_503_after_the_timeout() -> None:
    from ray_cluster.serve.app import Ingress

    ingress = Ingress.__new__(Ingress)
    ingress.timeout_s = 0.05
    response = _SlowResponse()
    with pytest.raises(RequestRejected) as info:
        asyncio.run(ingress._bounded(response, "model tiny"))
    assert info.value.status == 503
    assert info.value.code == "timeout"
    assert response.cancelled


def test_model_capacity_is_one_batch_per_replica_and_the_queue() -> None:
    from ray_cluster.serve.app import model_capacity, model_max_ongoing

    opts = ServeSettings(batch_max_size=8, max_replicas=2, max_queued_requests=4)
    assert model_max_ongoing(opts) == 8
    assert model_capacity(opts) == 2 * 8 + 4
    wide = ServeSettings(batch_max_size=1, target_ongoing_requests=2.5, max_replicas=1)
    assert model_max_ongoing(wide) == 3


def test_ingress_admits_predicts_up_to_the_model_capacity() -> None:
    from ray_cluster.serve.admission import Gate
    from ray_cluster.serve.app import Ingress

    ingress = Ingress.__new__(Ingress)
    ingress.gates = {"tiny": Gate(2)}
    # Uploads still on their way (admitted, body not read) hold no capacity.
    on_their_way = [ingress.admit("tiny") for _ in range(10)]
    gate = on_their_way[0]
    assert gate.in_flight == 0
    ingress.enter("tiny", gate)
    ingress.enter("tiny", gate)
    with pytest.raises(RequestRejected) as early:
        ingress.admit("tiny")
    assert (early.value.status, early.value.code) == (503, "overloaded")
    with pytest.raises(RequestRejected) as late:
        ingress.enter("tiny", gate)  # one whose body was read meanwhile
    assert late.value.code == "overloaded"
    assert gate.in_flight == 2
    gate.leave()
    ingress.enter("tiny", ingress.admit("tiny"))
    assert gate.in_flight == 2


def test_batcher_takes_what_came_during_the_previous_forward() -> None:
    import numpy as np

    from ray_cluster.serve.model import Batcher

    sizes: list[int] = []

    async def forward(stacked: np.ndarray) -> np.ndarray:
        sizes.append(len(stacked))
        await asyncio.sleep(0.05)
        return stacked[:, :1, 0, 0] * 2

    async def scenario() -> list[float]:
        batcher = Batcher(forward, max_images=4, wait_s=0.001)
        first = asyncio.ensure_future(batcher.submit(np.ones((1, 1, 2, 2))))
        await asyncio.sleep(0.02)  # the first forward runs; six chunks arrive
        rest = [
            asyncio.ensure_future(batcher.submit(np.full((1, 1, 2, 2), i)))
            for i in range(6)
        ]
        done = await asyncio.gather(first, *rest)
        return [float(probs[0, 0]) for probs, _, _ in done]

    values = asyncio.run(scenario())
    assert sizes == [1, 4, 2]
    assert values == [2.0] + [2.0 * i for i in range(6)]


def test_direct_ingress_takes_the_serve_port_alone_and_releases_it_at_once() -> None:
    from ray_cluster.serve import direct_ingress_env

    env = direct_ingress_env(8000, 41001)
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    # Ray allocates from [MIN, MAX): the one port a client was told.
    assert (
        env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"],
        env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"],
    ) == ("8000", "8001")
    assert env["RAY_SERVE_PORT_QUARANTINE_S"] == "0"


def test_replicas_run_handlers_on_their_own_loop() -> None:
    from ray_cluster.serve.app import REPLICA_ENV

    assert REPLICA_ENV["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"] == "0"


def test_replica_grpc_messages_hold_the_largest_upload() -> None:
    from ray_cluster.serve.app import replica_env

    env = replica_env(ServeSettings(max_upload_mb=64))
    assert int(env["RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"]) > 64 * 1024 * 1024
    assert env["RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"] == "0"
    # Never below Serve's own default.
    small = replica_env(ServeSettings(max_upload_mb=0.5))
    assert int(small["RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"]) == 4 * 1024 * 1024


def test_a_client_gone_mid_body_is_a_400_not_a_crash() -> None:
    from starlette.requests import ClientDisconnect

    from ray_cluster.serve.uploads import read_limited

    async def gone() -> AsyncIterator[bytes]:
        yield b"DICM"
        raise ClientDisconnect()

    with pytest.raises(RequestRejected) as info:
        asyncio.run(read_limited(gone(), None, 1024))
    assert (info.value.status, info.value.code) == (400, "client_disconnected")


def test_a_small_limit_reads_in_kib_with_the_callers_advice() -> None:
    from ray_cluster.serve.uploads import read_limited

    with pytest.raises(RequestRejected) as info:
        asyncio.run(read_limited(_stream([b"x" * 70000]), None, 65536, "for a ref"))
    assert info.value.message == "the body is larger than 64 KiB for a ref"


def test_job_error_codes_are_snake_case() -> None:
    from ray_cluster.errors import ObjectNotFoundError
    from ray_cluster.serve.jobs import _error_of

    error = _error_of(ObjectNotFoundError("no such bucket", key="b"))
    assert error["code"] == "object_not_found"


def test_openapi_document_names_the_keys_and_our_errors() -> None:
    from ray_cluster.serve.app import Ingress, _build_api

    doc = _build_api(Ingress.__new__(Ingress)).openapi()
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert "head" not in doc["paths"]["/healthz"]
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            responses = operation["responses"]
            assert "422" not in responses, path  # never answered
            if path not in ("/healthz", "/readyz"):
                assert {"401", "403"} <= set(responses), path
    predict = doc["paths"]["/v1/models/{name}/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    error = predict["responses"]["413"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
