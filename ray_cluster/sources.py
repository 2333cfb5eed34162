"""Studies from a local folder or from object storage, grouped by study.

A local folder is read the way a prefix is: every file is sniffed, so non-DICOM
files are reported and skipped, and files are grouped by StudyInstanceUID.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import InstanceHeader, parse_header

__all__ = ["LocalStudies", "iter_files", "read_local_studies"]

logger = logging.getLogger(__name__)


@dataclass
class LocalStudies:
    """Objects of a folder grouped by study, with every header."""

    studies: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    headers: dict[str, InstanceHeader] = field(default_factory=dict)

    def rejected(self) -> list[InstanceHeader]:
        """Return files that are not DICOM or cannot be read."""
        return [
            h for h in self.headers.values() if h.status in ("not_dicom", "unreadable")
        ]

    def skipped(self) -> list[InstanceHeader]:
        """Return DICOM files without pixel data."""
        return [h for h in self.headers.values() if h.status == "no_pixels"]


def iter_files(folder: Path) -> Iterator[Path]:
    """Yield every regular file under ``folder`` in a stable order."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def read_local_studies(folder: Path) -> LocalStudies:
    """Read every file under ``folder`` and group image objects by study.

    Keys are paths relative to ``folder``.
    """
    found = LocalStudies()
    groups: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for path in iter_files(folder):
        data = path.read_bytes()
        key = path.relative_to(folder).as_posix()
        header = parse_header(data, key=key, total_size=len(data))
        found.headers[key] = header
        if header.status == "image" and header.study_uid:
            groups[header.study_uid].append((key, data))
    found.studies = dict(sorted(groups.items()))
    logger.info(
        "read %d files: %d studies, %d rejected",
        len(found.headers),
        len(found.studies),
        len(found.rejected()),
    )
    return found
