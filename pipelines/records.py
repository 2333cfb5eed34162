"""Header facts of one DICOM object, as a flat record for the Parquet catalog.

A record holds what is needed to group, order and decode instances and nothing
that identifies a person: no patient module, accession number, dates, times or
free text (not even SeriesDescription). Studies and series are named by
:func:`study_key` / :func:`series_key`, short hashes of their UIDs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "HEADER_STATUSES",
    "HeaderStatus",
    "InstanceHeader",
    "series_key",
    "study_key",
]

HeaderStatus = Literal["image", "no_pixels", "not_dicom", "unreadable"]
HEADER_STATUSES: tuple[str, ...] = ("image", "no_pixels", "not_dicom", "unreadable")


def _uid_key(uid: str) -> str:
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:16]


def study_key(study_uid: str) -> str:
    """Return the name of a study used in logs, object keys and errors.

    Args:
        study_uid: StudyInstanceUID.

    Returns:
        The first 16 hex characters of the SHA-256 of the UID.
    """
    return _uid_key(study_uid)


def series_key(series_uid: str) -> str:
    """Return the short name of a series (same scheme as :func:`study_key`).

    Args:
        series_uid: SeriesInstanceUID.

    Returns:
        The first 16 hex characters of the SHA-256 of the UID.
    """
    return _uid_key(series_uid)


_TUPLE_FIELDS = ("image_type", "position", "orientation", "pixel_spacing", "warnings")


@dataclass(frozen=True)
class InstanceHeader:
    """What one object's header says, without patient data.

    Geometry is in the DICOM patient frame (LPS, millimetres). For enhanced
    multi-frame objects ``position``/``orientation``/``pixel_spacing`` are those
    of the first frame, read from the functional groups.

    Attributes:
        key: Object key (S3 key or local path).
        size: Object size in bytes.
        status: ``image``, ``no_pixels``, ``not_dicom`` or ``unreadable``.
        reason: Reason code when ``status`` is not ``image`` (else ``""``).
        study_uid: StudyInstanceUID.
        series_uid: SeriesInstanceUID.
        sop_uid: SOPInstanceUID.
        sop_class_uid: SOPClassUID.
        modality: Modality (CT, MR, CR, ...).
        series_number: SeriesNumber.
        transfer_syntax: Transfer syntax UID (inferred when ``ts_inferred``).
        ts_inferred: True when the object had no file meta and the syntax was
            inferred from the data set bytes.
        rows: Rows.
        columns: Columns.
        frames: NumberOfFrames (1 for single-frame objects).
        samples_per_pixel: SamplesPerPixel.
        bits_allocated: BitsAllocated.
        bits_stored: BitsStored.
        high_bit: HighBit.
        pixel_representation: 0 unsigned, 1 two's complement.
        photometric: PhotometricInterpretation.
        image_type: ImageType values.
        position: ImagePositionPatient.
        orientation: ImageOrientationPatient (row cosines, then column cosines).
        pixel_spacing: PixelSpacing (row spacing, column spacing).
        slice_thickness: SliceThickness (metadata only; never used as spacing).
        spacing_between_slices: SpacingBetweenSlices (metadata only).
        instance_number: InstanceNumber.
        acquisition_number: AcquisitionNumber.
        echo_number: First EchoNumbers value.
        temporal_position: TemporalPositionIdentifier.
        rescale_slope: RescaleSlope (top level).
        rescale_intercept: RescaleIntercept (top level).
        is_mosaic: True for a Siemens mosaic (ImageType contains MOSAIC).
        is_enhanced: True when the object has per-frame functional groups.
        warnings: Reason codes of problems recovered while reading the header.
    """

    key: str
    size: int
    status: HeaderStatus
    reason: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    sop_class_uid: str = ""
    modality: str = ""
    series_number: int | None = None
    transfer_syntax: str = ""
    ts_inferred: bool = False
    rows: int | None = None
    columns: int | None = None
    frames: int = 1
    samples_per_pixel: int | None = None
    bits_allocated: int | None = None
    bits_stored: int | None = None
    high_bit: int | None = None
    pixel_representation: int | None = None
    photometric: str = ""
    image_type: tuple[str, ...] = ()
    position: tuple[float, ...] | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, ...] | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    instance_number: int | None = None
    acquisition_number: int | None = None
    echo_number: int | None = None
    temporal_position: int | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    is_mosaic: bool = False
    is_enhanced: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def study_key(self) -> str:
        """Short hash of the StudyInstanceUID (``""`` when unknown)."""
        return study_key(self.study_uid) if self.study_uid else ""

    @property
    def series_key(self) -> str:
        """Short hash of the SeriesInstanceUID (``""`` when unknown)."""
        return series_key(self.series_uid) if self.series_uid else ""

    @property
    def is_localizer(self) -> bool:
        """True when ImageType marks the object as a localizer (scout)."""
        return "LOCALIZER" in self.image_type

    def estimated_decoded_bytes(self) -> int:
        """Return the float32 size of the decoded pixels (0 when unknown)."""
        if not self.rows or not self.columns:
            return 0
        samples = self.samples_per_pixel or 1
        return self.rows * self.columns * max(self.frames, 1) * samples * 4

    def to_row(self) -> dict[str, Any]:
        """Return a flat dict of simple types (lists for tuples) for Parquet.

        The row also carries ``study_key`` and ``series_key``.
        """
        row: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            row[f.name] = list(value) if isinstance(value, tuple) else value
        row["study_key"] = self.study_key
        row["series_key"] = self.series_key
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> InstanceHeader:
        """Rebuild a header from :meth:`to_row` output (extra keys ignored).

        Args:
            row: A row as written by :meth:`to_row` (lists or arrays allowed).

        Returns:
            The header.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in row.items():
            if name not in names:
                continue
            if name in _TUPLE_FIELDS and value is not None:
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)
