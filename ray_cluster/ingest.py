"""Upload a local folder (a PACS export, a CD) into object storage.

File names on an export may carry patient names, so object keys are derived from
content, never copied from the name:

```
<prefix>/<study key>/<series key>/<sha256(content)[:20]>.dcm   DICOM with UIDs
<prefix>/_unsorted/<sha256(content)[:20]>                      everything else
```

The study key is sha256(StudyInstanceUID)[:16], the series key likewise from
SeriesInstanceUID. Only those two elements are read from a header. An object is
skipped when it exists with the same sha256 in its user metadata, so a second
run uploads nothing. Files are named in logs and reports only by
sha256(relative path)[:12], since the path itself may name a patient.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.tag import Tag

from pipelines.records import series_key, study_key
from ray_cluster.errors import ConfigError, ObjectNotFoundError, StorageError
from ray_cluster.storage import ObjectStore, S3Url

__all__ = [
    "UNSORTED",
    "IngestReport",
    "derive_key",
    "file_id",
    "ingest_folder",
    "object_key_for",
    "read_uids",
]

logger = logging.getLogger(__name__)

UNSORTED = "_unsorted"
_HASH_CHARS = 20
_IN_MEMORY_MAX = 64 * 1024 * 1024
_CHUNK = 1024 * 1024
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_UID_TAGS = [Tag(0x0020, 0x000D), Tag(0x0020, 0x000E)]  # Study/SeriesInstanceUID


def derive_key(
    prefix: str,
    content_sha256: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> str:
    """Return the object key of a file from its content hash and UIDs.

    Args:
        prefix: Key prefix without leading or trailing slash (may be empty).
        content_sha256: Hex sha256 of the whole file.
        study_uid: StudyInstanceUID, or None when the file has none.
        series_uid: SeriesInstanceUID, or None when the file has none.

    Returns:
        ``<prefix>/<study key>/<series key>/<hash>.dcm`` when both UIDs are
        given, else ``<prefix>/_unsorted/<hash>``.
    """
    name = content_sha256[:_HASH_CHARS]
    if study_uid and series_uid:
        parts = [study_key(study_uid), series_key(series_uid), f"{name}.dcm"]
    else:
        parts = [UNSORTED, name]
    return "/".join(p for p in (prefix.strip("/"), *parts) if p)


def _valid_uid(value: object) -> str | None:
    text = str(value).strip("\x00 ") if value is not None else ""
    return text if len(text) <= 64 and _UID_RE.match(text) else None


def read_uids(source: Path | BinaryIO) -> tuple[str, str] | None:
    """Return (StudyInstanceUID, SeriesInstanceUID) of a DICOM file, else None.

    Only those two elements are read, and reading stops before Pixel Data. Files
    that are not DICOM, are cut short in the header or lack either UID give None.
    """
    try:
        dataset = pydicom.dcmread(
            source, stop_before_pixels=True, force=True, specific_tags=_UID_TAGS
        )
        study = _valid_uid(dataset.get("StudyInstanceUID"))
        series = _valid_uid(dataset.get("SeriesInstanceUID"))
    except Exception:  # pydicom raises many types on junk; all mean "not usable"
        return None
    if study is None or series is None:
        return None
    return study, series


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def object_key_for(path: Path, prefix: str) -> str:
    """Return the object key ``path`` gets under ``prefix`` (reads the file)."""
    uids = read_uids(path)
    return derive_key(prefix, _sha256_file(path), *(uids or (None, None)))


def file_id(relative: str) -> str:
    """Return the name of a local file in logs: sha256(relative path)[:12]."""
    return hashlib.sha256(relative.encode("utf-8", "surrogateescape")).hexdigest()[:12]


@dataclass
class IngestReport:
    """What one ingest did; ``errors`` name files by `file_id`, never by path."""

    url: str
    files: int = 0
    uploaded: int = 0
    skipped_same: int = 0
    unsorted: int = 0
    failed: int = 0
    bytes_uploaded: int = 0
    seconds: float = 0.0
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class _Outcome:
    key: str
    uploaded: bool
    size: int


class _Uploader:
    def __init__(self, store: ObjectStore, url: S3Url) -> None:
        self.store = store
        self.url = url
        self._lock = threading.Lock()
        self._claimed: set[str] = set()

    def _claim(self, key: str) -> bool:
        with self._lock:
            if key in self._claimed:
                return False
            self._claimed.add(key)
            return True

    def _same_exists(self, key: str, digest: str, size: int) -> bool:
        try:
            info = self.store.stat(self.url.bucket, key)
        except ObjectNotFoundError:
            return False
        if "sha256" in info.metadata:
            return info.metadata["sha256"] == digest
        return info.size == size

    def upload(self, path: Path) -> _Outcome:
        size = path.stat().st_size
        data: bytes | None = None
        if size <= _IN_MEMORY_MAX:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            uids = read_uids(io.BytesIO(data))
        else:
            digest = _sha256_file(path)
            uids = read_uids(path)
        key = derive_key(self.url.prefix, digest, *(uids or (None, None)))
        if not self._claim(key) or self._same_exists(key, digest, size):
            return _Outcome(key, uploaded=False, size=size)

        content_type = "application/dicom" if uids else "application/octet-stream"
        metadata = {"sha256": digest}
        if data is not None:
            self.store.put(self.url.bucket, key, data, content_type, metadata)
        else:
            self.store.put_file(self.url.bucket, key, path, content_type, metadata)
        return _Outcome(key, uploaded=True, size=size)


def _walk(root: Path) -> list[Path]:
    """Every file under ``root``, through linked folders too (each folder once)."""
    files: list[Path] = []
    seen: set[str] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree, or two links to one folder
            dirs.clear()
            continue
        seen.add(real)
        dirs.sort()
        files.extend(Path(folder) / name for name in sorted(names))
    return [f for f in files if f.is_file()]


def ingest_folder(
    store: ObjectStore,
    local_dir: Path,
    url: S3Url | str,
    threads: int | None = None,
    on_file: Callable[[int], None] | None = None,
) -> IngestReport:
    """Upload every file under ``local_dir`` to ``url``, skipping ones present.

    Args:
        store: The object store.
        local_dir: Folder to walk (symbolic links to folders are not followed).
        url: Destination ``s3://bucket/prefix``; the bucket is created if missing.
        threads: Parallel uploads; default ``store.threads``.
        on_file: Called with the file's size after each file (for progress bars).

    Returns:
        Counts, bytes, seconds and per-file errors.

    Raises:
        ConfigError: ``local_dir`` is not a folder or ``url`` is malformed.
        StorageError: The bucket cannot be checked or created.
    """
    target = S3Url.parse(url) if isinstance(url, str) else url
    root = Path(local_dir)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; give the folder to ingest")
    started = time.monotonic()
    store.ensure_bucket(target.bucket)
    files = _walk(root)
    report = IngestReport(url=str(target), files=len(files))
    uploader = _Uploader(store, target)
    lock = threading.Lock()

    def work(path: Path) -> None:
        name = file_id(str(path.relative_to(root)))
        code = ""
        outcome: _Outcome | None = None
        try:
            outcome = uploader.upload(path)
        except OSError as exc:
            logger.warning("file %s unreadable (%s); skipped", name, exc.strerror)
            code = "unreadable"
        except StorageError as exc:
            logger.warning("file %s not uploaded: %s", name, exc)
            code = "storage"
        with lock:
            if outcome is None:
                report.failed += 1
                report.errors.append({"file_id": name, "code": code})
            elif outcome.uploaded:
                report.uploaded += 1
                report.bytes_uploaded += outcome.size
            else:
                report.skipped_same += 1
            if outcome is not None and f"/{UNSORTED}/" in f"/{outcome.key}":
                report.unsorted += 1
        logger.debug("file %s -> %s", name, outcome.key if outcome else code)
        if on_file is not None:
            on_file(0 if outcome is None else outcome.size)

    store.map_threads(work, files, threads)
    report.seconds = round(time.monotonic() - started, 3)
    logger.info(
        "ingest to %s: %d files, %d uploaded, %d already there, %d failed in %.1f s",
        target,
        report.files,
        report.uploaded,
        report.skipped_same,
        report.failed,
        report.seconds,
    )
    return report
