"""Study objects in S3-compatible storage (MinIO in production, SeaweedFS locally).

`ObjectStore` wraps the minio SDK: one thread-safe client, one urllib3 pool sized
to ``storage.threads``, and errors translated into `StorageError` and
`ObjectNotFoundError` whose messages name ``s3://bucket/key`` and the next step.
Credentials are resolved on the node that uses them (`resolve_credentials`),
never passed as task arguments, and never appear in ``repr`` or messages.
"""

from __future__ import annotations

import builtins
import io
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import MAX_PART_SIZE, MIN_PART_SIZE

from ray_cluster import embedded
from ray_cluster.config import Secret, StorageSettings
from ray_cluster.errors import ConfigError, ObjectNotFoundError, StorageError

__all__ = [
    "ObjectInfo",
    "ObjectStore",
    "S3Url",
    "export_credentials",
    "resolve_credentials",
    "resolve_endpoint",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Bucket names as S3 accepts them: 3-63 of lowercase letters, digits, '.', '-'.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_META_PREFIX = "x-amz-meta-"
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject"})
_AUTH_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}
)
# What the minio SDK and urllib3 raise; `ObjectStore._fail` translates each.
_CLIENT_ERRORS = (
    S3Error,
    ServerError,
    InvalidResponseError,
    urllib3.exceptions.HTTPError,
)
_CREDENTIAL_HINT = (
    "check MEDRAY_STORAGE__ACCESS_KEY/MEDRAY_STORAGE__SECRET_KEY, "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or storage.secret_file"
)


@dataclass(frozen=True)
class S3Url:
    """A bucket and a key prefix, written ``s3://bucket/prefix``.

    The prefix has no leading or trailing slash; it may be empty.
    """

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> S3Url:
        """Parse ``s3://bucket`` or ``s3://bucket/some/prefix``.

        Raises:
            ConfigError: The text is not an s3:// URL with a valid bucket name.
        """
        if not isinstance(text, str) or not text.startswith("s3://"):
            raise ConfigError(
                f"{text!r} is not an S3 URL; write it as s3://bucket/prefix",
                key=str(text),
            )
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise ConfigError(
                f"{text!r} has an invalid bucket name {bucket!r}: use 3-63 "
                "lowercase letters, digits, '.' or '-'",
                key=text,
            )
        prefix = prefix.strip("/")
        if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
            raise ConfigError(
                f"{text!r} has an empty, '.' or '..' part in its prefix",
                key=text,
            )
        return cls(bucket, prefix)

    @property
    def folder(self) -> str:
        """The prefix as a listing prefix: ``"a/b/"`` (``""`` for a whole bucket).

        ``s3://bucket/a/b`` names the folder ``a/b``: listing ``a/b`` alone would
        take in ``a/bc/`` too.
        """
        return f"{self.prefix}/" if self.prefix else ""

    def key(self, *parts: str) -> str:
        """Return the object key of ``parts`` under this prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def child(self, *parts: str) -> S3Url:
        """Return the URL of a sub-prefix."""
        return S3Url(self.bucket, self.key(*parts))

    def __str__(self) -> str:
        return (
            f"s3://{self.bucket}/{self.prefix}"
            if self.prefix
            else f"s3://{self.bucket}"
        )


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a HEAD says about one object."""

    key: str
    size: int
    etag: str
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    content_type: str | None = None


def _read_secret_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the secret file {path}: {exc.strerror}; check "
            "storage.secret_file (it must exist at this path on every node)",
            key="storage.secret_file",
        ) from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip().upper()] = value.strip()
    return values


def resolve_credentials(
    storage: StorageSettings, env: Mapping[str, str] | None = None
) -> tuple[Secret, Secret]:
    """Find the access key and secret key for ``storage`` on this node.

    Sources, first complete pair wins: the settings, the environment
    (``MEDRAY_STORAGE__ACCESS_KEY``/``MEDRAY_STORAGE__SECRET_KEY``, then
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``), ``storage.secret_file``, and
    when no endpoint is configured, the embedded store's credentials file.

    Args:
        storage: Storage settings; actors get them with secrets removed.
        env: Environment to read; defaults to ``os.environ``.

    Returns:
        ``(access_key, secret_key)``, both `Secret`.

    Raises:
        ConfigError: No source holds both keys, or the secret file is unreadable.
    """
    env = os.environ if env is None else env
    candidates: list[tuple[str, str | None, str | None]] = [
        (
            "settings",
            storage.access_key.get_secret_value() if storage.access_key else None,
            storage.secret_key.get_secret_value() if storage.secret_key else None,
        ),
        (
            "MEDRAY_STORAGE__* variables",
            env.get("MEDRAY_STORAGE__ACCESS_KEY"),
            env.get("MEDRAY_STORAGE__SECRET_KEY"),
        ),
        (
            "AWS_* variables",
            env.get("AWS_ACCESS_KEY_ID"),
            env.get("AWS_SECRET_ACCESS_KEY"),
        ),
    ]
    if storage.secret_file is not None:
        values = _read_secret_file(storage.secret_file)
        candidates.append(
            (
                str(storage.secret_file),
                values.get("ACCESS_KEY"),
                values.get("SECRET_KEY"),
            )
        )
    for source, access, secret in candidates:
        if access and secret:
            return Secret(access), Secret(secret)
        if access or secret:
            raise ConfigError(
                f"the {source} hold only one of the access key and the secret key; "
                "set both in the same place",
                key="storage.access_key",
            )
    if storage.endpoint is None:
        pair = embedded.read_credentials(storage.data_dir)
        if pair is not None:
            return pair
    hint = " or run `medray store up`" if storage.endpoint is None else ""
    raise ConfigError(
        f"no S3 credentials found: {_CREDENTIAL_HINT}{hint}",
        key="storage.access_key",
    )


def export_credentials(storage: StorageSettings) -> None:
    """Put the credentials for ``storage`` in this process's environment.

    Called before a local Ray starts: its workers inherit the environment, so
    actors read credentials from their node and never receive them as arguments.
    Variables already set are kept.

    Raises:
        ConfigError: No source holds both keys (`resolve_credentials`).
    """
    access, secret = resolve_credentials(storage)
    os.environ.setdefault("MEDRAY_STORAGE__ACCESS_KEY", access.get_secret_value())
    os.environ.setdefault("MEDRAY_STORAGE__SECRET_KEY", secret.get_secret_value())


def resolve_endpoint(storage: StorageSettings) -> str:
    """Return the configured endpoint, else the running embedded store's.

    Raises:
        StorageError: No endpoint is configured and no embedded store runs.
    """
    if storage.endpoint:
        return storage.endpoint
    endpoint = embedded.read_endpoint(storage.data_dir)
    if endpoint is None:
        raise StorageError(
            "no object store: storage.endpoint is unset and no embedded store runs "
            f"in {storage.data_dir}; run `medray store up` or set "
            "MEDRAY_STORAGE__ENDPOINT",
            key="storage.endpoint",
        )
    return endpoint


def _split_endpoint(endpoint: str) -> tuple[str, bool]:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"storage.endpoint {endpoint!r} must look like http://host:port or "
            "https://host:port",
            key="storage.endpoint",
        )
    if parts.path not in ("", "/") or parts.query or "@" in parts.netloc:
        raise ConfigError(
            f"storage.endpoint {endpoint!r} must not carry a path, query or user; "
            "give only scheme, host and port",
            key="storage.endpoint",
        )
    return parts.netloc, parts.scheme == "https"


class ObjectStore:
    """A thread-safe S3 client for one endpoint; build it with `from_settings`.

    Objects of this class hold credentials: build one on each node that needs
    it instead of pickling it into a task (pickling raises `TypeError`).
    """

    def __init__(
        self,
        endpoint: str,
        access_key: Secret,
        secret_key: Secret,
        *,
        region: str = "us-east-1",
        verify_tls: bool = True,
        ca_bundle: Path | None = None,
        threads: int = 8,
        timeout_s: float = 60.0,
    ) -> None:
        """Connect lazily to ``endpoint`` (``http(s)://host:port``)."""
        host, secure = _split_endpoint(endpoint)
        self.endpoint = endpoint.rstrip("/")
        self.threads = threads
        if secure and verify_tls:
            tls: dict[str, Any] = {
                "cert_reqs": "CERT_REQUIRED",
                "ca_certs": str(ca_bundle) if ca_bundle else certifi.where(),
            }
        else:
            tls = {"cert_reqs": "CERT_NONE"}
        pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=max(threads, 1),
            block=False,
            timeout=urllib3.Timeout(connect=10.0, read=timeout_s),
            retries=urllib3.Retry(
                total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)
            ),
            **tls,
        )
        self._client = Minio(
            host,
            access_key=access_key.get_secret_value(),
            secret_key=secret_key.get_secret_value(),
            secure=secure,
            region=region,
            http_client=pool,
            cert_check=verify_tls,
        )

    @classmethod
    def from_settings(
        cls, storage: StorageSettings, env: Mapping[str, str] | None = None
    ) -> ObjectStore:
        """Build a store from settings, resolving endpoint and credentials here.

        Raises:
            ConfigError: Credentials or the endpoint are missing or malformed.
            StorageError: No endpoint is configured and no embedded store runs.
        """
        endpoint = resolve_endpoint(storage)
        access_key, secret_key = resolve_credentials(storage, env)
        return cls(
            endpoint,
            access_key,
            secret_key,
            region=storage.region,
            verify_tls=storage.verify_tls,
            ca_bundle=storage.ca_bundle,
            threads=storage.threads,
        )

    def __repr__(self) -> str:
        return f"ObjectStore(endpoint={self.endpoint!r}, threads={self.threads})"

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "ObjectStore holds credentials and is not sent between processes; "
            "build it on the node with ObjectStore.from_settings(settings.storage)"
        )

    # -- errors -----------------------------------------------------------------

    def _fail(self, exc: Exception, bucket: str, key: str | None = None) -> NoReturn:
        where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
        if isinstance(exc, S3Error):
            if exc.code in _NOT_FOUND_CODES:
                what = "bucket" if exc.code == "NoSuchBucket" else "object"
                raise ObjectNotFoundError(
                    f"{where}: no such {what}; check the URL or run `medray ingest`",
                    key=where,
                ) from None
            if exc.code in _AUTH_CODES:
                raise StorageError(
                    f"{where}: {self.endpoint} refused the request ({exc.code}); "
                    f"{_CREDENTIAL_HINT}",
                    key=where,
                ) from None
            raise StorageError(
                f"{where}: {self.endpoint} answered {exc.code}: {exc.message}",
                key=where,
            ) from None
        if isinstance(exc, ServerError):
            raise StorageError(
                f"{where}: {self.endpoint} failed with HTTP {exc.status_code}; "
                "retry later or check the server's log",
                key=where,
            ) from None
        if isinstance(exc, InvalidResponseError):
            raise StorageError(
                f"{where}: {self.endpoint} gave a response that is not S3; "
                "check storage.endpoint",
                key=where,
            ) from None
        raise StorageError(
            f"{where}: cannot reach {self.endpoint} ({type(exc).__name__}); run "
            "`medray store up` or check MEDRAY_STORAGE__ENDPOINT",
            key=where,
        ) from None

    # -- buckets -----------------------------------------------------------------

    def ensure_bucket(self, bucket: str) -> bool:
        """Create ``bucket`` unless it exists; return True when it was created."""
        try:
            if self._client.bucket_exists(bucket):
                return False
            self._client.make_bucket(bucket)
        except S3Error as exc:
            if exc.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return False
            self._fail(exc, bucket)
        except _CLIENT_ERRORS as exc:
            self._fail(exc, bucket)
        logger.info("created bucket s3://%s", bucket)
        return True

    # -- reads -------------------------------------------------------------------

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object under ``prefix`` (recursively), in key order."""
        try:
            for item in self._client.list_objects(
                bucket, prefix=prefix, recursive=True
            ):
                if item.is_dir or item.object_name is None:
                    continue
                yield ObjectInfo(
                    key=item.object_name,
                    size=item.size or 0,
                    etag=(item.etag or "").strip('"'),
                )
        except _CLIENT_ERRORS as exc:
            self._fail(exc, bucket, prefix or None)

    def get(self, bucket: str, key: str) -> bytes:
        """Return the whole object."""
        return self._read(bucket, key, 0, 0)

    def get_range(self, bucket: str, key: str, start: int, length: int) -> bytes:
        """Return up to ``length`` bytes from ``start`` (fewer at the end)."""
        if start < 0 or length <= 0:
            raise ValueError(f"bad range start={start} length={length}")
        return self._read(bucket, key, start, length)

    def _read(self, bucket: str, key: str, start: int, length: int) -> bytes:
        response = None
        try:
            response = self._client.get_object(bucket, key, offset=start, length=length)
            return bytes(response.read())
        except _CLIENT_ERRORS as exc:
            self._fail(exc, bucket, key)
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        """Return size, etag, content type and user metadata of one object."""
        try:
            result = self._client.stat_object(bucket, key)
        except _CLIENT_ERRORS as exc:
            self._fail(exc, bucket, key)
        metadata = {
            name.lower()[len(_META_PREFIX) :]: value
            for name, value in (result.metadata or {}).items()
            if name.lower().startswith(_META_PREFIX)
        }
        return ObjectInfo(
            key=key,
            size=result.size or 0,
            etag=(result.etag or "").strip('"'),
            metadata=MappingProxyType(metadata),
            content_type=result.content_type,
        )

    def exists(self, bucket: str, key: str) -> bool:
        """Return whether the object exists."""
        try:
            self.stat(bucket, key)
        except ObjectNotFoundError:
            return False
        return True

    # -- writes ------------------------------------------------------------------

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Write ``data`` in a single PUT: readers see all of it or nothing."""
        part_size = min(max(len(data), MIN_PART_SIZE), MAX_PART_SIZE)
        try:
            result = self._client.put_object(
                bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata=dict(metadata) if metadata else None,
                part_size=part_size,
            )
        except _CLIENT_ERRORS as exc:
            self._fail(exc, bucket, key)
        return ObjectInfo(key, len(data), (result.etag or "").strip('"'))

    def put_file(
        self,
        bucket: str,
        key: str,
        path: Path,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Upload a local file; large files go in parts, visible only when done."""
        try:
            result = self._client.fput_object(
                bucket,
                key,
                str(path),
                content_type=content_type,
                metadata=dict(metadata) if metadata else None,
            )
        except _CLIENT_ERRORS as exc:
            self._fail(exc, bucket, key)
        return ObjectInfo(key, path.stat().st_size, (result.etag or "").strip('"'))

    def delete(self, bucket: str, key: str) -> None:
        """Delete one object; deleting a missing object is not an error."""
        try:
            self._client.remove_object(bucket, key)
        except _CLIENT_ERRORS as exc:
            self._fail(exc, bucket, key)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object under ``prefix``; return how many were deleted."""
        keys = [info.key for info in self.list(bucket, prefix)]
        for start in range(0, len(keys), 1000):
            batch = [DeleteObject(k) for k in keys[start : start + 1000]]
            try:
                errors = list(self._client.remove_objects(bucket, batch))
            except _CLIENT_ERRORS as exc:
                self._fail(exc, bucket, prefix)
            if errors:
                first = errors[0]
                raise StorageError(
                    f"s3://{bucket}/{prefix}: {len(errors)} objects were not deleted "
                    f"(first s3://{bucket}/{first.name}: {first.code}); retry",
                    key=f"s3://{bucket}/{prefix}",
                )
        return len(keys)

    # -- parallel helper -----------------------------------------------------------

    def get_many(
        self, bucket: str, keys: Sequence[str], threads: int | None = None
    ) -> builtins.list[tuple[str, bytes]]:
        """Fetch objects in parallel; return ``(key, bytes)`` in ``keys`` order."""
        blobs = self.map_threads(lambda key: self.get(bucket, key), keys, threads)
        return builtins.list(zip(keys, blobs, strict=True))

    def map_threads(
        self, fn: Callable[[T], R], items: Iterable[T], threads: int | None = None
    ) -> builtins.list[R]:
        """Apply ``fn`` to ``items`` on up to ``threads`` threads, keeping order.

        The first exception raised by ``fn`` is raised here once all running
        calls have finished.
        """
        workers = max(1, threads or self.threads)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3") as pool:
            return list(pool.map(fn, items))
