"""One typed settings object for every part of medray.

Precedence, highest first: CLI flags (``overrides``), environment variables
(prefix ``MEDRAY_``, ``__`` between section and field, e.g.
``MEDRAY_STORAGE__ENDPOINT``), the YAML file given by ``--config``, defaults.
Nothing here reads the environment at import time: call `load_settings` once in
the driver and pass the result (secrets removed with `Settings.without_secrets`)
to actors, which read credentials from their own node.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from ray_cluster.errors import ConfigError

__all__ = [
    "ClusterSettings",
    "InferenceSettings",
    "PreprocessingSettings",
    "Secret",
    "ServeSettings",
    "Settings",
    "StorageSettings",
    "default_data_dir",
    "load_settings",
]

logger = logging.getLogger(__name__)

ENV_PREFIX = "MEDRAY_"

#: Secrets print as ``**********``: in repr, str, logs and JSON dumps.
Secret = SecretStr


def default_data_dir() -> Path:
    """Return the per-user data folder (embedded store, model cache)."""
    return Path(platformdirs.user_data_dir("medray", appauthor=False))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageSettings(_Section):
    """Where studies, catalogs, results and models live (MinIO or any S3)."""

    endpoint: str | None = Field(
        None,
        description="S3 endpoint URL such as https://minio.example:9000. Unset: "
        "use the embedded store started by `medray store up`.",
    )
    region: str = Field("us-east-1", description="S3 region name.")
    bucket: str = Field(
        "medray",
        description="Default bucket: the demo's studies and, unless "
        "inference.registry_bucket says otherwise, the model registry.",
    )
    verify_tls: bool = Field(True, description="Verify the server's certificate.")
    ca_bundle: Path | None = Field(None, description="CA bundle for a private CA.")
    access_key: Secret | None = Field(
        None, description="Access key id; prefer the environment or secret_file."
    )
    secret_key: Secret | None = Field(
        None, description="Secret access key; prefer the environment or secret_file."
    )
    secret_file: Path | None = Field(
        None,
        description="File with lines ACCESS_KEY=... and SECRET_KEY=...; read on "
        "each node, so it must exist at this path on every node.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder of the embedded store (data, identities, state).",
    )
    threads: int = Field(
        8, ge=1, le=128, description="Parallel requests for ingest and catalog."
    )
    header_probe_bytes: int = Field(
        65536,
        ge=1024,
        description="First ranged GET size when reading headers; doubled as needed.",
    )


class ClusterSettings(_Section):
    """How the driver reaches or starts Ray, and how big its worker pools are."""

    address: str | None = Field(
        None,
        description="Ray address: unset starts a local Ray on loopback; 'auto', "
        "'ray://host:port' or a GCS 'host:port' joins a running cluster.",
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray.")
    object_store_mb: int | None = Field(
        None,
        ge=64,
        description="Object store of a local Ray in MiB; unset sizes it to the "
        "machine (a quarter of /dev/shm, at most 2048).",
    )
    preprocess_actors: int = Field(
        2, ge=1, description="Most CPU actors that fetch, decode and preprocess."
    )
    inference_actors: int = Field(1, ge=1, description="Most inference actors.")
    max_in_flight: int = Field(
        8, ge=1, description="Studies in flight at once; bounds driver memory."
    )
    cpus_per_preprocess_actor: float = Field(
        1.0, gt=0, description="CPUs reserved by each preprocessing actor."
    )
    cpu_resource: str | None = Field(
        None,
        description="Custom resource CPU actors ask for (e.g. medray_cpu) so they "
        "land on the CPU worker type.",
    )
    use_gpu: Literal["auto", "never", "always"] = Field(
        "auto",
        description="auto: inference actors ask for a GPU when the cluster has "
        "GPUs or node groups that add them (KubeRay, autoscaler v2); on a "
        "launcher cluster whose GPU nodes scale from zero, use always.",
    )
    placement_timeout_s: float = Field(
        900.0,
        gt=0,
        description="A job fails when work waits this long and no actor of a "
        "pool could be placed (no node type has, or can add, its resources).",
    )


class PreprocessingSettings(_Section):
    """Limits applied while decoding."""

    max_decoded_mb: int = Field(
        2048, ge=1, description="Refuse an object whose decoded pixels exceed this."
    )
    retries: int = Field(
        2, ge=0, description="Retries of a study on errors other than bad input."
    )


class InferenceSettings(_Section):
    """Model, device and batching of the batch job."""

    model: str | None = Field(None, description="Default model name.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Device.")
    max_batch_size: int = Field(
        32, ge=1, description="Most images in one forward pass across studies."
    )
    batch_wait_ms: float = Field(
        20.0, ge=0, description="Longest wait to fill a batch, in milliseconds."
    )
    results_prefix: str = Field(
        "medray-results", description="Prefix of results, job reports and catalogs."
    )
    registry_prefix: str = Field(
        "medray-models", description="Prefix of the model registry in the bucket."
    )
    registry_bucket: str | None = Field(
        None, description="Bucket of the model registry; unset: storage.bucket."
    )
    cache_dir: Path = Field(
        default_factory=lambda: default_data_dir() / "models",
        description="Local cache of model weights, keyed by sha256.",
    )


class ServeSettings(_Section):
    """The HTTP diagnosis application."""

    host: str = Field("127.0.0.1", description="Address the HTTP proxy binds.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    direct_ingress: bool = Field(
        True,
        description="When medray starts a local Ray for serving: the ingress "
        "replica answers HTTP itself (Ray Serve's direct ingress), without the "
        "HTTP proxy actor and its extra process hop. A running cluster keeps "
        "its own mode (the RAY_SERVE_ENABLE_DIRECT_INGRESS of its nodes).",
    )
    min_replicas: int = Field(1, ge=0, description="Fewest model replicas.")
    max_replicas: int = Field(2, ge=1, description="Most model replicas.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Autoscaling target of ongoing requests per replica."
    )
    max_queued_requests: int = Field(
        16,
        ge=1,
        description="Requests a model deployment queues beyond what its replicas "
        "hold (batch_max_size each); past that the ingress answers 503 before "
        "reading the body. About one batch keeps a queued request at most one "
        "batch behind.",
    )
    admission_wait_s: float | None = Field(
        None,
        gt=0,
        description="Refuse (503) a predict request at once when the requests "
        "already in flight for its model would keep it longer than this, by the "
        "model's measured service rate; unset: only the fixed bound (replicas, "
        "batch and queue). Bounds the latency of accepted requests under "
        "overload; keep it above the latency of one study at moderate load.",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="Requests running longer get a 503/504."
    )
    max_upload_mb: float = Field(64.0, gt=0, description="Largest request body.")
    batch_max_size: int = Field(
        16, ge=1, description="Most images in one forward of a model replica."
    )
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        description="Wait of a batch that starts on an idle model, to gather "
        "company; every request that finds the model idle pays it. Under load "
        "batches form without it (from what came during the previous forward).",
    )
    batcher: Literal["medray", "ray"] = Field(
        "medray",
        description="How a model replica groups images into forwards. medray: "
        "the next batch is taken when the model is free, from what came during "
        "the previous forward. ray: Ray Serve's @serve.batch (batch size counted "
        "in images), which forms the next batch as soon as the previous one "
        "starts; under steady load its batches are smaller (see "
        "benchmarks/serve.py, batching phase).",
    )
    upscale_delay_s: float = Field(
        5.0, ge=0, description="Load must last this long before a replica is added."
    )
    downscale_delay_s: float = Field(
        120.0, ge=0, description="Idle time before a model replica is removed."
    )
    metrics_interval_s: float = Field(
        10.0, gt=0, description="How often replicas report load to the autoscaler."
    )
    look_back_period_s: float = Field(
        30.0, gt=0, description="Window the autoscaler averages load over."
    )
    server_timing: bool = Field(
        False,
        description="Add a Server-Timing header (milliseconds per stage: body "
        "read, parse, model call, prepare, batch wait, forward, finish) to "
        "predict answers; for benchmarks and tuning.",
    )
    api_keys: tuple[Secret, ...] = Field(
        (),
        description="Accepted API keys (a list, or one string of comma-separated "
        "keys); prefer api_key_file or the environment.",
    )
    api_key_file: Path | None = Field(
        None, description="File with one accepted API key per line."
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        """Accept ``MEDRAY_SERVE__API_KEYS=key1,key2`` as well as a list."""
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value


class Settings(_Section):
    """Every setting of medray, grouped by section."""

    storage: StorageSettings = Field(default_factory=StorageSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    preprocessing: PreprocessingSettings = Field(default_factory=PreprocessingSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)

    def without_secrets(self) -> Settings:
        """Return a copy safe to send to actors: every secret removed."""
        storage = self.storage.model_copy(
            update={"access_key": None, "secret_key": None}
        )
        serve = self.serve.model_copy(update={"api_keys": ()})
        return self.model_copy(update={"storage": storage, "serve": serve})

    def public_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-ready data with secrets masked."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        return data


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), dict):
            merged[name] = _deep_merge(merged[name], value)
        else:
            merged[name] = value
    return merged


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, field = name[len(ENV_PREFIX) :].lower().partition("__")
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        layer.setdefault(section, {})[field] = value
    for standard, field in (
        ("AWS_ACCESS_KEY_ID", "access_key"),
        ("AWS_SECRET_ACCESS_KEY", "secret_key"),
    ):
        if standard in env and field not in layer.get("storage", {}):
            layer.setdefault("storage", {})[field] = env[standard]
    return layer


def _yaml_layer(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}; check the --config path",
            key=str(path),
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file {path} is not valid YAML: {exc}", key=str(path)
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of sections "
            "(storage, cluster, preprocessing, inference, serve)",
            key=str(path),
        )
    return loaded


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def load_settings(
    config_path: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from defaults, a YAML file, the environment and flags.

    Args:
        config_path: YAML file with sections as top-level keys.
        overrides: Nested mapping from CLI flags; ``None`` values are ignored.
        env: Environment to read; defaults to ``os.environ``.

    Returns:
        The frozen settings.

    Raises:
        ConfigError: A file, variable or flag is invalid or unknown.
    """
    data: dict[str, Any] = {}
    if config_path is not None:
        data = _deep_merge(data, _yaml_layer(Path(config_path)))
    data = _deep_merge(data, _env_layer(os.environ if env is None else env))
    if overrides:
        cleaned = {
            section: {k: v for k, v in fields.items() if v is not None}
            for section, fields in overrides.items()
        }
        data = _deep_merge(data, cleaned)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {_describe(exc)}") from None
