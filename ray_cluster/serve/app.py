"""The HTTP ingress of medray's Serve application, and how the application is built.

Deployments of the application ``medray``:

- ``ingress`` (FastAPI): authentication, body limits, routing, access log;
- ``model-<name>``, one per served model (`ModelServer`): autoscaled, batched;
- ``jobs`` (`StudyJobs`): references to studies in the bucket, run in background.

The FastAPI app is built on each ingress replica (``__serve_build_asgi_app__``)
after the replica has read its API keys from its own node.

Admission: the ingress counts the predict requests it has in flight per model and
answers 503 ``overloaded`` before reading a body once they reach what the model's
replicas can hold (`model_capacity`) or, with ``serve.admission_wait_s`` set,
what the model serves within that time (`ray_cluster.serve.admission`). A
refused request then costs no body read and no DICOM parse, which would
otherwise take the CPU from accepted requests. A request counts as in flight
once its body is read: uploads on their way hold no capacity.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException as StarletteHTTPException

from models import ModelCard
from ray_cluster.config import ServeSettings, Settings
from ray_cluster.errors import ConfigError
from ray_cluster.log import configure_logging
from ray_cluster.serve._loopback import bind_replica_grpc_to_loopback
from ray_cluster.serve.admission import Gate
from ray_cluster.serve.auth import ApiKeys, KeyCheck, presented_key
from ray_cluster.serve.jobs import StudyJobs
from ray_cluster.serve.model import Answer, ModelServer
from ray_cluster.serve.openapi import openapi_document
from ray_cluster.serve.uploads import (
    RequestRejected,
    body_kind,
    read_limited,
    split_parts,
)
from ray_cluster.storage import S3Url

__all__ = [
    "APP_NAME",
    "OPEN_PATHS",
    "Ingress",
    "StudyReference",
    "build_app",
    "model_capacity",
    "model_max_ongoing",
    "replica_env",
    "serve_logging",
]

logger = logging.getLogger(__name__)

APP_NAME = "medray"
#: Routes answered without an API key (probes of load balancers and Kubernetes).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
MAX_REFERENCE_BYTES = 64 * 1024
#: Error codes of the routing errors FastAPI raises itself.
HTTP_ERROR_CODES = {404: "no_such_route", 405: "method_not_allowed"}
ROUTING_ADVICE = {
    404: "no such route; the routes are listed in /openapi.json",
    405: "this route does not take that method; the Allow header lists the ones "
    "it takes",
}
READY_TIMEOUT_S = 5.0
#: The ingress only parses and forwards; the bounded queue that matters is the
#: model deployment's (``serve.max_queued_requests``). These bound a flood.
INGRESS_MAX_ONGOING = 256
INGRESS_MAX_QUEUED = 256
#: Environment of the ingress and model replicas: their request handlers run on
#: the replica's own event loop instead of a second loop in another thread,
#: which saves two thread hops per request (and per body chunk). Every handler
#: of ours is async and sends blocking work to a thread.
REPLICA_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}
#: Room in a gRPC message between replicas beyond the upload it carries.
GRPC_MARGIN_BYTES = 1024 * 1024
#: Serve's own limit of a gRPC message between replicas (its default).
SERVE_GRPC_DEFAULT_BYTES = 4 * 1024 * 1024


def serve_logging(log_level: str) -> dict[str, Any]:
    """Serve's logging config of medray's actors: Serve's own records at
    ``log_level`` or above (at most WARNING), no Serve access log (the
    ingress writes its own lines)."""
    level = logging.getLevelName(log_level.upper())
    serve_level = (
        log_level.upper() if level in (logging.DEBUG, logging.INFO) else "WARNING"
    )
    return {"log_level": serve_level, "enable_access_log": False}


def replica_env(opts: ServeSettings) -> dict[str, str]:
    """Environment of the ingress and model replicas (their ``runtime_env``).

    `REPLICA_ENV`, and a gRPC message limit between replicas that holds the
    largest upload: the ingress hands a body to a model replica in one message,
    and Serve's default limit (4 MiB) would fail larger uploads.
    """
    limit = int(opts.max_upload_mb * 1024 * 1024) + GRPC_MARGIN_BYTES
    grpc_limit = str(max(limit, SERVE_GRPC_DEFAULT_BYTES))
    return {**REPLICA_ENV, "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": grpc_limit}


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class StudyReference(BaseModel):
    """Body of ``POST /v1/studies``: where the study is, and which model to run."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Name of a served model.")
    url: str = Field(description="s3://bucket/prefix holding the study (or studies).")
    study_uid: str | None = Field(
        None,
        description="StudyInstanceUID in the prefix's catalog; unset: every study "
        "under the prefix.",
    )


def model_max_ongoing(opts: ServeSettings) -> int:
    """Requests one model replica takes at once: one batch (at least the target).

    A request beyond that waits in the deployment's queue, so an accepted request
    has at most the running batch and the queue ahead of it.
    """
    return max(opts.batch_max_size, math.ceil(opts.target_ongoing_requests))


def model_capacity(opts: ServeSettings) -> int:
    """Predict requests one model deployment holds at most, running and queued.

    ``max_replicas`` (not the replicas running now) bounds it: while fewer run,
    the deployment's own queue refuses the excess after the body was read.
    """
    replicas = max(opts.max_replicas, opts.min_replicas, 1)
    return replicas * model_max_ongoing(opts) + opts.max_queued_requests


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers=headers,
    )


class _Guard:
    """ASGI middleware: API key on every route but the open ones, one log line each.

    The log line holds the route template, status, milliseconds and, when the
    handler identified one, the study key; never headers, bodies or query text.
    """

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            denied = self._deny(scope)
            if denied is not None:
                await denied(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "(unrouted)"
            state = scope.get("state") or {}
            logger.info(
                "%s %s %d %.1f ms study=%s",
                scope.get("method", "-"),
                path,
                status[0],
                1000 * (time.perf_counter() - started),
                state.get("study_key", "-"),
            )

    def _deny(self, scope: Scope) -> JSONResponse | None:
        if scope.get("path") in OPEN_PATHS:
            return None
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope.get("headers", [])
        }
        verdict = self.keys.check(presented_key(headers))
        if verdict is KeyCheck.MISSING:
            return _error(
                401,
                "missing_api_key",
                "send an API key in 'Authorization: Bearer <key>' or 'X-API-Key'",
                **{"WWW-Authenticate": "Bearer"},
            )
        if verdict is KeyCheck.WRONG:
            return _error(403, "wrong_api_key", "the API key is not accepted")
        return None


def _card_summary(card: ModelCard) -> dict[str, Any]:
    return {
        "name": card.name,
        "version": card.version,
        "sha256": card.sha256,
        "architecture": card.architecture,
        "labels": list(card.labels),
        "input": dict(card.input),
        "description": card.description,
        "intended_use": card.intended_use,
    }


class Ingress:
    """The FastAPI ingress: checks requests and hands them to the deployments.

    Args:
        settings: Settings without secrets; API keys are read on this node.
        cards: Model name -> card JSON of each served model.
        models: Model name -> handle of its deployment.
        jobs: Handle of the `StudyJobs` deployment.
        log_level: Level of this replica's medray log records.

    Raises:
        ConfigError: No API key is configured on this node (the deployment fails).
    """

    def __init__(
        self,
        settings: Settings,
        cards: dict[str, str],
        models: dict[str, Any],
        jobs: Any,
        log_level: str,
    ) -> None:
        configure_logging(log_level, "text")
        bind_replica_grpc_to_loopback()
        self.settings = settings
        self.keys = ApiKeys.load(settings.serve)
        self.cards = {name: ModelCard.from_json(text) for name, text in cards.items()}
        # gRPC between replicas instead of Ray actor calls: ~3 ms less per
        # request here (the payload is bytes and a small result either way).
        self.models = {
            name: handle.options(_by_reference=False) for name, handle in models.items()
        }
        self.jobs = jobs
        self.max_body = int(settings.serve.max_upload_mb * 1024 * 1024)
        self.timeout_s = settings.serve.request_timeout_s
        self.gates = {
            name: Gate(model_capacity(settings.serve), settings.serve.admission_wait_s)
            for name in models
        }
        self.server_timing = settings.serve.server_timing
        logger.info(
            "ingress ready: %d models, %d API keys", len(models), len(self.keys)
        )

    def __serve_build_asgi_app__(self) -> ASGIApp:
        api = _build_api(self)
        return _Guard(api, self.keys)

    def admit(self, name: str) -> Gate:
        """Refuse a predict request of a model at once when the model is full.

        This check comes before the body is read, so a refusal costs no read;
        the request is counted in (`enter`) only once its body is read, so
        uploads still on their way (a slow link, a stalled client) hold no
        model capacity.

        Returns:
            The model's gate, for `enter`.

        Raises:
            RequestRejected: 503 when ``name``'s deployment already holds what its
                gate allows (`ray_cluster.serve.admission`).
        """
        gate = self.gates[name]
        if not gate.has_room():
            raise _overloaded(name)
        return gate

    @staticmethod
    def enter(name: str, gate: Gate) -> None:
        """Count a request whose body is read in, or refuse it (503) when full."""
        if not gate.try_enter():
            raise _overloaded(name)

    async def call_model(self, name: str, objects: list[Any]) -> Answer:
        """Ask a model deployment for the result of uploaded instances, bounded in time.

        Raises:
            RequestRejected: 503 when the model's queue is full or the request
                runs past ``serve.request_timeout_s``.
        """
        response = self.models[name].predict.remote(objects)
        answer: Answer = await self._bounded(response, f"model {name}")
        return answer

    async def _bounded(self, response: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(_resolve(response), self.timeout_s)
        except BackPressureError:
            raise RequestRejected(
                503, "overloaded", f"{what} is at capacity; retry shortly"
            ) from None
        except TimeoutError:
            response.cancel()
            raise RequestRejected(
                503,
                "timeout",
                f"{what} did not answer within {self.timeout_s:g} s "
                "(serve.request_timeout_s); retry later",
            ) from None


async def _resolve(response: Any) -> Any:
    return await response


def _build_api(ingress: Ingress) -> FastAPI:
    api = FastAPI(
        title="medray",
        summary="Diagnosis of DICOM studies by medray models.",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        # A path with a trailing slash is a 404, not a redirect built from the
        # client's Host header.
        redirect_slashes=False,
    )

    @api.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: RequestRejected) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 503 else {}
        return _error(exc.status, exc.code, exc.message, **headers)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Routing errors (404 no such route, 405 wrong method) in our error shape.
        code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        message = ROUTING_ADVICE.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, code, message, **(exc.headers or {}))

    @api.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Our error shape for a failure nobody foresaw; the log has the details.
        logger.error("request failed: %s", type(exc).__name__, exc_info=exc)
        return _error(
            500,
            "internal_error",
            "the service failed on this request; its operators find the cause in "
            "the ingress log",
        )

    # HEAD too, for load balancers' health checks (not in the OpenAPI document).
    @api.head("/healthz", include_in_schema=False)
    @api.get("/healthz", summary="The process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.head("/readyz", include_in_schema=False)
    @api.get(
        "/readyz",
        summary="Every model deployment answers.",
        responses={503: {"description": "Some model deployment does not answer."}},
    )
    async def readyz() -> JSONResponse:
        async def one(name: str) -> bool:
            try:
                info = ingress.models[name].info.remote()
                await asyncio.wait_for(_resolve(info), READY_TIMEOUT_S)
            except Exception:
                return False
            return True

        names = sorted(ingress.models)
        states = await asyncio.gather(*(one(n) for n in names))
        ready = dict(zip(names, states, strict=True))
        ok = all(states)
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "models": ready},
            status_code=200 if ok else 503,
        )

    @api.get("/v1/models", summary="The served models and their cards.")
    async def list_models() -> dict[str, Any]:
        return {
            "models": [_card_summary(ingress.cards[n]) for n in sorted(ingress.cards)]
        }

    @api.post(
        "/v1/models/{name}/predict",
        summary="Diagnose one study sent in the body.",
        description="One instance as application/dicom, or several as "
        "multipart/related (or multipart/form-data) parts of one study. The "
        "answer is the batch job's result document for that study.",
        responses={
            400: {
                "description": "Not DICOM, no image, several studies, or a "
                "multipart body cut short."
            },
            404: {"description": "No such model."},
            413: {"description": "Body larger than serve.max_upload_mb."},
            415: {"description": "Content type not accepted."},
            503: {"description": "Overloaded or timed out; retry later."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/dicom": {
                        "schema": {"type": "string", "format": "binary"}
                    },
                    "multipart/related": {
                        "schema": {"type": "string", "format": "binary"}
                    },
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "string",
                                "format": "binary",
                            },
                        }
                    },
                },
            }
        },
    )
    async def predict(name: str, request: Request) -> JSONResponse:
        if name not in ingress.models:
            raise RequestRejected(404, "unknown_model", _unknown_model(ingress, name))
        kind, boundary = body_kind(request.headers.get("content-type"))
        gate = ingress.admit(name)
        return await _predict(ingress, name, request, kind, boundary, gate)

    @api.post(
        "/v1/studies",
        status_code=202,
        summary="Diagnose a study already in the bucket; returns a job id.",
        responses={
            400: {"description": "Not JSON {model, url, study_uid?}, or a bad URL."},
            404: {"description": "No such model."},
            413: {"description": "A reference larger than 64 KiB."},
            415: {"description": "Not application/json."},
            503: {"description": "The job service did not answer in time."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": StudyReference.model_json_schema()}
                },
            }
        },
    )
    async def submit_study(request: Request) -> JSONResponse:
        mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if mime != "application/json":
            raise RequestRejected(
                415, "unsupported_media_type", "send the reference as application/json"
            )
        body = await read_limited(
            request.stream(),
            request.headers.get("content-length"),
            MAX_REFERENCE_BYTES,
            "for a study reference, a small JSON document {model, url, study_uid?}",
        )
        try:
            reference = StudyReference.model_validate_json(body)
        except ValidationError as exc:
            fields = ", ".join(
                ".".join(map(str, e["loc"])) or "body" for e in exc.errors()
            )
            raise RequestRejected(
                400,
                "bad_reference",
                f"the body must be JSON {{model, url, study_uid?}}; check: {fields}",
            ) from None
        if reference.model not in ingress.models:
            raise RequestRejected(
                404, "unknown_model", _unknown_model(ingress, reference.model)
            )
        try:
            # Checked here, so that a client's mistake is no failure of the
            # job service (with a traceback in its log).
            target = S3Url.parse(reference.url)
        except ConfigError as exc:
            raise RequestRejected(400, "bad_url", exc.message) from None
        status = await ingress._bounded(
            ingress.jobs.submit.remote(
                reference.model, str(target), reference.study_uid
            ),
            "the job service",
        )
        return JSONResponse(
            status,
            status_code=202,
            headers={"Location": f"/v1/jobs/{status['job_id']}"},
        )

    @api.get(
        "/v1/jobs/{job_id}",
        summary="Status, progress and result of a job.",
        responses={404: {"description": "No such job (jobs live in memory)."}},
    )
    async def job_status(job_id: str) -> JSONResponse:
        status = await ingress._bounded(
            ingress.jobs.status.remote(job_id), "the job service"
        )
        if status is None:
            raise RequestRejected(
                404, "unknown_job", f"no job {job_id!r} (jobs live in memory)"
            )
        return JSONResponse(status)

    api.openapi = functools.partial(openapi_document, api, OPEN_PATHS)  # type: ignore[method-assign]
    return api


async def _predict(
    ingress: Ingress,
    name: str,
    request: Request,
    kind: str,
    boundary: bytes,
    gate: Gate,
) -> JSONResponse:
    started = time.perf_counter()
    body = await read_limited(
        request.stream(), request.headers.get("content-length"), ingress.max_body
    )
    read_at = time.perf_counter()

    parts = split_parts(body, kind, boundary)
    del body
    objects = [(f"part-{i}", data) for i, data in enumerate(parts)]
    split_at = time.perf_counter()

    ingress.enter(name, gate)
    answered = False
    try:
        answer = await ingress.call_model(name, objects)
        answered = True  # a refused upload's answer is a service sample too
    finally:
        gate.leave(answered)
    if answer.rejection is not None:
        raise RequestRejected(*answer.rejection)
    request.state.study_key = answer.result.get("study_key", "-")
    response = JSONResponse(answer.result)
    if ingress.server_timing:
        stages = {
            "read": read_at - started,
            "split": split_at - read_at,
            "model_call": time.perf_counter() - split_at,
        }
        stages_ms = {k: 1000 * v for k, v in stages.items()} | answer.stages_ms
        stages_ms["ingress"] = 1000 * (time.perf_counter() - started)
        response.headers["Server-Timing"] = ", ".join(
            f"{k};dur={v:.2f}" for k, v in stages_ms.items()
        )
    return response


def _overloaded(name: str) -> RequestRejected:
    return RequestRejected(
        503, "overloaded", f"model {name} is at capacity; retry shortly"
    )


def _unknown_model(ingress: Ingress, name: str) -> str:
    known = ", ".join(sorted(ingress.models)) or "none"
    return f"model {name!r} is not served here; served: {known} (GET /v1/models)"


def build_app(
    settings: Settings,
    cards: list[ModelCard],
    log_level: str = "WARNING",
    *,
    use_gpu: bool = False,
) -> Any:
    """Bind the deployments of the application for `serve.run`.

    Args:
        settings: Settings; secrets are removed before they reach a replica.
        cards: Cards of the models to serve (one deployment each).
        log_level: Level of medray log records in the replicas.
        use_gpu: Model replicas ask for one GPU each instead of one CPU.

    Returns:
        The bound application (a ``ray.serve.Application``).

    Raises:
        ValueError: No card, or two cards with the same name.
    """
    if not cards:
        raise ValueError("give at least one model to serve")
    names = [c.name for c in cards]
    if len(set(names)) != len(names):
        raise ValueError(f"each model may be served once; got {names}")
    safe = settings.without_secrets()
    opts = settings.serve
    autoscaling = {
        "min_replicas": opts.min_replicas,
        "initial_replicas": max(1, opts.min_replicas),
        "max_replicas": max(opts.max_replicas, opts.min_replicas, 1),
        "target_ongoing_requests": opts.target_ongoing_requests,
        "upscale_delay_s": opts.upscale_delay_s,
        "downscale_delay_s": opts.downscale_delay_s,
        "metrics_interval_s": opts.metrics_interval_s,
        "look_back_period_s": max(opts.look_back_period_s, 2 * opts.metrics_interval_s),
    }
    runtime_env = {"env_vars": replica_env(opts)}
    resources: dict[str, Any] = (
        {"num_cpus": 0, "num_gpus": 1} if use_gpu else {"num_cpus": 1}
    )
    resources["runtime_env"] = runtime_env
    model_apps = {}
    for card in cards:
        deployment = serve.deployment(
            name=f"model-{card.name}",
            autoscaling_config=autoscaling,
            max_ongoing_requests=model_max_ongoing(opts),
            max_queued_requests=opts.max_queued_requests,
            backpressure_config={"status_code": 503, "retry_after_s": 1},
            ray_actor_options=resources,
            health_check_period_s=10.0,
            logging_config=serve_logging(log_level),
        )(ModelServer)
        model_apps[card.name] = deployment.bind(safe, card.to_json(), log_level)
    jobs = serve.deployment(
        name="jobs",
        num_replicas=1,
        max_ongoing_requests=1000,
        ray_actor_options={"num_cpus": 0},
        logging_config=serve_logging(log_level),
    )(StudyJobs).bind(safe, model_apps, log_level)
    ingress_cls = serve.ingress()(Ingress)
    ingress = serve.deployment(
        name="ingress",
        num_replicas=1,
        max_ongoing_requests=INGRESS_MAX_ONGOING,
        max_queued_requests=INGRESS_MAX_QUEUED,
        backpressure_config={"status_code": 503, "retry_after_s": 1},
        ray_actor_options={"num_cpus": 0, "runtime_env": runtime_env},
        logging_config=serve_logging(log_level),
    )(ingress_cls)
    return ingress.bind(
        safe, {c.name: c.to_json() for c in cards}, model_apps, jobs, log_level
    )
