"""The catalog of a prefix: one row per object, read from headers only.

Headers are read with ranged GETs that stop before Pixel Data: the first
``storage.header_probe_bytes`` bytes, doubled while the header goes on. The
catalog is written back to the bucket as Parquet and updated incrementally: an
object whose key and ETag are unchanged is not read again.
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import InstanceHeader, NeedMoreBytes, PipelineError, parse_header
from ray_cluster.config import Settings
from ray_cluster.errors import CatalogError, ObjectNotFoundError
from ray_cluster.storage import ObjectInfo, ObjectStore, S3Url

__all__ = ["Catalog", "build_catalog", "catalog_key", "load_catalog", "read_header"]

logger = logging.getLogger(__name__)

CATALOG_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024 * 1024


@dataclass
class Catalog:
    """Headers of every object under a prefix.

    Attributes:
        url: The catalogued prefix.
        headers: One header per object (non-DICOM objects included).
        etags: ETag per object key, to skip unchanged objects next time.
    """

    url: S3Url
    headers: list[InstanceHeader]
    etags: dict[str, str] = field(default_factory=dict)

    def studies(self) -> dict[str, list[InstanceHeader]]:
        """Return instances with pixel data grouped by StudyInstanceUID."""
        groups: dict[str, list[InstanceHeader]] = defaultdict(list)
        for header in self.headers:
            if header.study_uid and header.status == "image":
                groups[header.study_uid].append(header)
        return {uid: sorted(hs, key=lambda h: h.key) for uid, hs in groups.items()}

    def rejected(self) -> list[InstanceHeader]:
        """Return objects that are not DICOM or whose header cannot be read."""
        return [h for h in self.headers if h.status in ("not_dicom", "unreadable")]

    def skipped(self) -> list[InstanceHeader]:
        """Return DICOM objects without pixel data (DICOMDIR, SR, ...)."""
        return [h for h in self.headers if h.status == "no_pixels"]

    def summary(self) -> dict[str, Any]:
        """Return counts for the CLI: objects, studies, series, by status."""
        studies = self.studies()
        series = {h.series_uid for hs in studies.values() for h in hs}
        by_status = Counter(h.status for h in self.headers)
        modalities = Counter(h.modality or "?" for hs in studies.values() for h in hs)
        return {
            "url": str(self.url),
            "objects": len(self.headers),
            "bytes": sum(h.size for h in self.headers),
            "studies": len(studies),
            "series": len(series),
            "instances": sum(len(hs) for hs in studies.values()),
            "by_status": dict(sorted(by_status.items())),
            "modalities": dict(sorted(modalities.items())),
        }

    def to_parquet(self) -> bytes:
        """Serialise to Parquet bytes."""
        rows = []
        for header in self.headers:
            row = header.to_row()
            row["etag"] = self.etags.get(header.key, "")
            rows.append(row)
        table = pa.Table.from_pylist(rows)
        metadata = {
            b"medray_catalog_version": str(CATALOG_VERSION).encode(),
            b"medray_url": str(self.url).encode(),
        }
        table = table.replace_schema_metadata(metadata)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue()

    @classmethod
    def from_parquet(cls, url: S3Url, data: bytes) -> Catalog:
        """Read a catalog written by `to_parquet`."""
        table = pq.read_table(io.BytesIO(data))
        headers = []
        etags = {}
        for row in table.to_pylist():
            etags[row["key"]] = row.pop("etag", "") or ""
            headers.append(InstanceHeader.from_row(row))
        return cls(url=url, headers=headers, etags=etags)


def catalog_key(settings: Settings, url: S3Url) -> str:
    """Return the key of a prefix's catalog in its bucket."""
    slug = url.prefix.strip("/").replace("/", "~") or "_root"
    prefix = settings.inference.results_prefix.strip("/")
    return f"{prefix}/catalogs/{slug}/catalog.parquet"


def read_header(
    store: ObjectStore, bucket: str, info: ObjectInfo, probe: int
) -> InstanceHeader:
    """Read one object's header with ranged GETs, widening as needed.

    An object that cannot be read becomes a header with status ``unreadable``
    and a reason code; it never stops the catalog.
    """
    wanted = min(probe, info.size)
    while True:
        try:
            data = store.get_range(bucket, info.key, 0, wanted) if wanted else b""
            return parse_header(data, key=info.key, total_size=info.size)
        except NeedMoreBytes as more:
            if wanted >= info.size or wanted >= MAX_HEADER_BYTES:
                return _unreadable(info, "header_too_long")
            wanted = min(max(more.wanted, wanted * 2), info.size, MAX_HEADER_BYTES)
            logger.debug("widening header read of %s to %d bytes", info.key, wanted)
        except ObjectNotFoundError:
            return _unreadable(info, "object_vanished")
        except PipelineError as exc:
            return _unreadable(info, exc.code or "header_unreadable")


def _unreadable(info: ObjectInfo, reason: str) -> InstanceHeader:
    logger.warning("object %s: header unreadable (%s)", info.key, reason)
    return InstanceHeader(
        key=info.key, size=info.size, status="unreadable", reason=reason
    )


def _excluded_prefixes(settings: Settings) -> tuple[str, ...]:
    return (
        settings.inference.results_prefix.strip("/") + "/",
        settings.inference.registry_prefix.strip("/") + "/",
    )


def _list_objects(
    store: ObjectStore, url: S3Url, settings: Settings
) -> list[ObjectInfo]:
    excluded = _excluded_prefixes(settings)
    infos = [
        info
        for info in store.list(url.bucket, url.folder)
        if not info.key.startswith(excluded) and not info.key.endswith("/")
    ]
    return sorted(infos, key=lambda i: i.key)


def load_catalog(store: ObjectStore, settings: Settings, url: S3Url) -> Catalog | None:
    """Return the stored catalog of a prefix, or None when there is none."""
    key = catalog_key(settings, url)
    try:
        data = store.get(url.bucket, key)
    except ObjectNotFoundError:
        return None
    try:
        return Catalog.from_parquet(url, data)
    except (pa.ArrowException, KeyError, TypeError, ValueError) as exc:
        raise CatalogError(
            f"catalog s3://{url.bucket}/{key} is unreadable ({type(exc).__name__}); "
            "delete it and run `medray catalog` again",
            key=key,
        ) from None


def _read_headers(
    store: ObjectStore,
    bucket: str,
    infos: Iterable[ObjectInfo],
    settings: Settings,
    on_header: Callable[[InstanceHeader], None] | None,
) -> list[InstanceHeader]:
    probe = settings.storage.header_probe_bytes

    def one(info: ObjectInfo) -> InstanceHeader:
        header = read_header(store, bucket, info, probe)
        if on_header is not None:
            on_header(header)
        return header

    with ThreadPoolExecutor(settings.storage.threads) as pool:
        return list(pool.map(one, infos))


def build_catalog(
    store: ObjectStore,
    settings: Settings,
    url: S3Url,
    *,
    previous: Catalog | None = None,
    on_header: Callable[[InstanceHeader], None] | None = None,
    write: bool = True,
) -> Catalog:
    """List a prefix, read new or changed headers, and store the catalog.

    Args:
        store: Object store client.
        settings: Settings (probe size, threads, results prefix).
        url: The prefix to catalogue.
        previous: An earlier catalog; unchanged objects are taken from it.
        on_header: Called once per newly read header (progress).
        write: Store the catalog back in the bucket.

    Returns:
        The catalog, its rows in key order.
    """
    started = time.perf_counter()
    infos = _list_objects(store, url, settings)
    known = {h.key: h for h in previous.headers} if previous else {}
    old_etags = previous.etags if previous else {}
    fresh = [i for i in infos if i.key not in known or old_etags.get(i.key) != i.etag]
    read = {
        h.key: h for h in _read_headers(store, url.bucket, fresh, settings, on_header)
    }
    headers = [read.get(i.key) or known[i.key] for i in infos]
    catalog = Catalog(url=url, headers=headers, etags={i.key: i.etag for i in infos})
    if write:
        key = catalog_key(settings, url)
        store.put(
            url.bucket,
            key,
            catalog.to_parquet(),
            content_type="application/vnd.apache.parquet",
        )
    logger.info(
        "catalogued %s: %d objects (%d read) in %.2f s",
        url,
        len(infos),
        len(fresh),
        time.perf_counter() - started,
    )
    return catalog


def ensure_catalog(store: ObjectStore, settings: Settings, url: S3Url) -> Catalog:
    """Return the catalog of a prefix, building or refreshing it as needed."""
    previous = load_catalog(store, settings, url)
    return build_catalog(store, settings, url, previous=previous)
