"""medray's HTTP diagnosis service on Ray Serve.

`deploy` starts (or updates) the application ``medray`` on the connected Ray
cluster, or on a local Ray it starts; `shutdown` removes it. Routes, deployments
and limits are described in ``docs/serve.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from models import ModelCard
from ray_cluster._internal.ray_runtime import (
    connect_ray,
    free_loopback_port,
    has_gpus,
)
from ray_cluster.config import Settings
from ray_cluster.registry import ModelRegistry
from ray_cluster.serve.app import (
    APP_NAME,
    OPEN_PATHS,
    StudyReference,
    build_app,
    serve_logging,
)
from ray_cluster.serve.auth import ENV_API_KEYS, ApiKeys
from ray_cluster.serve.ports import wait_for_port
from ray_cluster.storage import (
    ObjectStore,
    export_credentials,
    resolve_credentials,
    resolve_endpoint,
)

__all__ = [
    "APP_NAME",
    "OPEN_PATHS",
    "Deployed",
    "StudyReference",
    "build_app",
    "deploy",
    "direct_ingress_env",
    "parse_model_ref",
    "shutdown",
]

logger = logging.getLogger(__name__)

#: Seconds the HTTP proxy adds to ``serve.request_timeout_s`` before it gives up
#: itself; the ingress answers 503 first.
PROXY_TIMEOUT_MARGIN_S = 5.0


@dataclass(frozen=True)
class Deployed:
    """Where the application answers, and what it serves."""

    url: str
    models: list[ModelCard]
    started_ray: bool


def parse_model_ref(text: str) -> tuple[str, str | None]:
    """Split ``name`` or ``name:version`` into name and version."""
    name, _, version = text.partition(":")
    if not name:
        raise ValueError(f"model reference {text!r} has no name; use NAME[:VERSION]")
    return name, version or None


def _export_node_secrets(settings: Settings) -> None:
    """Put credentials and API keys in this process's environment.

    Called before a local Ray starts: its workers inherit this environment, so
    the replicas read secrets from their node and never receive them as
    arguments.
    """
    export_credentials(settings.storage)
    keys = [k.get_secret_value() for k in settings.serve.api_keys]
    if keys and ENV_API_KEYS not in os.environ:
        os.environ[ENV_API_KEYS] = json.dumps(keys)


def direct_ingress_env(port: int, grpc_port: int) -> dict[str, str]:
    """Ray Serve's environment for direct ingress on one port of this node.

    The ingress replica then runs the HTTP server itself on ``port`` (no HTTP
    proxy actor, so no proxy hop and no body relay). Ports are released at once
    (no quarantine) and an ingress replica drains for at most a second: both
    exist for load balancers in front of many nodes, and a local Ray has none.
    """
    return {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 1),
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc_port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc_port + 1),
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
    }


def _direct_ingress_port() -> int | None:
    """The direct-ingress HTTP port of a Ray started from this process, if any."""
    if os.environ.get("RAY_SERVE_ENABLE_DIRECT_INGRESS") != "1":
        return None
    return int(os.environ.get("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", "30000"))


@contextlib.contextmanager
def _serve_driver_logs(log_level: str) -> Iterator[None]:
    """Keep Serve's own info lines out of the driver's output below INFO.

    With direct ingress Serve announces the unused proxy's URL as the
    application's; medray prints the right one.
    """
    serve_logger = logging.getLogger("ray.serve")
    before = serve_logger.level
    if logging.getLevelName(log_level.upper()) not in (logging.DEBUG, logging.INFO):
        serve_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        serve_logger.setLevel(before)


def deploy(
    settings: Settings,
    models: Sequence[str],
    *,
    log_level: str = "WARNING",
) -> Deployed:
    """Start or update the Serve application for some models.

    With ``cluster.address`` unset and no Ray running, a local Ray starts on
    loopback (the caller keeps the process alive and calls `shutdown`); with
    ``serve.direct_ingress`` the ingress replica itself answers HTTP on
    ``serve.port``. A running cluster keeps its own ingress mode.

    Args:
        settings: Settings of the driver (with credentials).
        models: ``NAME`` or ``NAME:VERSION`` of each model in the registry.
        log_level: Level of medray log records in the replicas.

    Returns:
        The base URL, the cards served and whether this call started Ray.

    Raises:
        ConfigError: No API key is configured, or a setting is invalid.
        ServeError: A local start finds ``serve.port`` held by another program.
        ObjectNotFoundError: A model is not in the registry.
    """
    # Credentials first: with no endpoint configured they may be the embedded
    # store's, which are only looked up while the endpoint is still unset.
    access, secret = resolve_credentials(settings.storage)
    endpoint = resolve_endpoint(settings.storage)
    storage = settings.storage.model_copy(
        update={"endpoint": endpoint, "access_key": access, "secret_key": secret}
    )
    settings = settings.model_copy(update={"storage": storage})
    registry = ModelRegistry(ObjectStore.from_settings(settings.storage), settings)
    cards = [registry.get_card(*parse_model_ref(m)) for m in models]

    local = not ray.is_initialized() and settings.cluster.address is None
    opts = settings.serve
    if local:
        ApiKeys.load(settings.serve)
        wait_for_port(opts.host, opts.port)
        _export_node_secrets(settings)
        if opts.direct_ingress:
            # Read by the local Ray's controller and replicas when they start.
            os.environ.update(direct_ingress_env(opts.port, free_loopback_port()))
    # A local `medray serve` is the console of its service: replica log
    # records (access lines, errors) are shown there.
    started = connect_ray(settings, log_to_driver=local)
    # Ray starts its HTTP proxy even with direct ingress: then on another port.
    proxy_port = (
        free_loopback_port() if _direct_ingress_port() == opts.port else opts.port
    )
    gpu = settings.cluster.use_gpu == "always" or (
        settings.cluster.use_gpu == "auto" and has_gpus()
    )
    app = build_app(settings, cards, log_level, use_gpu=gpu)
    with _serve_driver_logs(log_level):
        serve.start(
            http_options={
                "host": opts.host,
                "port": proxy_port,
                "request_timeout_s": opts.request_timeout_s + PROXY_TIMEOUT_MARGIN_S,
            },
            logging_config=serve_logging(log_level),
        )
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    host = "127.0.0.1" if opts.host in ("0.0.0.0", "::") else opts.host
    url = f"http://{host}:{opts.port}"
    logger.info("serving %s at %s", ", ".join(c.name for c in cards), url)
    return Deployed(url=url, models=cards, started_ray=started)


def shutdown(stop_ray: bool = False) -> None:
    """Remove every Serve application and the HTTP proxy; optionally stop Ray."""
    if ray.is_initialized():
        stop_serve: Any = serve.shutdown  # untyped in some Ray builds
        stop_serve()
        if stop_ray:
            ray.shutdown()
