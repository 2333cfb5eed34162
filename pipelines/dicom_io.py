"""Read DICOM objects from bytes: sniff, parse headers, read whole instances.

Objects come from object storage as bytes. :func:`parse_header` works on a
prefix (the caller fetches the first bytes with a ranged GET) and asks for more
with :class:`~pipelines.errors.NeedMoreBytes`; :func:`read_instance` reads a
whole object into a :class:`pydicom.Dataset`. Neither keeps a file handle, so
nothing is read lazily from a stream that cannot seek.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydicom
from pydicom.charset import convert_encodings, python_encoding
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pipelines.errors import NeedMoreBytes, NotDicomError, TruncatedError
from pipelines.records import HeaderStatus, InstanceHeader

__all__ = [
    "InstanceIdentity",
    "header_from_dataset",
    "identify_instance",
    "parse_header",
    "read_instance",
    "sniff",
]

logger = logging.getLogger(__name__)

_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_APPLEDOUBLE_MAGIC = (b"\x00\x05\x16\x07", b"\x00\x05\x16\x00")
_MIN_PREFIX = 64 * 1024

_T = TypeVar("_T")


# -- sniffing


def sniff(data: bytes) -> tuple[str, str]:
    """Tell what kind of object ``data`` starts with.

    Args:
        data: The object, or its first bytes (at least 132 for a fair answer).

    Returns:
        ``(layout, reason)``: layout is ``"part10"`` (128-byte preamble and
        ``DICM``), ``"raw"`` (a data set with neither, read with force) or
        ``"none"``; reason is a not-DICOM reason code when layout is ``"none"``
        (``empty_object``, ``appledouble``, ``jpeg_file``, ``text_file``,
        ``unknown_format``) and ``""`` otherwise.
    """
    if not data:
        return "none", "empty_object"
    if data[128:132] == b"DICM":
        return "part10", ""
    if data[:4] in _APPLEDOUBLE_MAGIC:
        return "none", "appledouble"
    if data[:3] == b"\xff\xd8\xff":
        return "none", "jpeg_file"
    if data[:4] in (b"\x89PNG", b"%PDF", b"PK\x03\x04") or data[:2] == b"\x1f\x8b":
        return "none", "other_file_format"
    if data[:4] == b"DICM" or _looks_like_raw_dataset(data):
        return "raw", ""
    if _looks_like_text(data):
        return "none", "text_file"
    return "none", "unknown_format"


def _looks_like_raw_dataset(data: bytes) -> bool:
    """True when the bytes open with a plausible little-endian data element."""
    if len(data) < 8:
        return False
    group, _element = struct.unpack("<HH", data[:4])
    if group not in (0x0002, 0x0004, 0x0008, 0x0010, 0x0018, 0x0020):
        return False
    vr = data[4:6]
    if vr.isalpha() and vr.isupper():
        return True
    (length,) = struct.unpack("<I", data[4:8])
    return bool(length < 1024 or length == 0xFFFFFFFF)


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * len(text)


# -- reading


def _read_partial(data: bytes) -> tuple[Dataset, bool]:
    """Parse ``data`` up to top-level Pixel Data; return (dataset, reached)."""
    reached = [False]

    def stop_at_pixels(tag: BaseTag, vr: str | None, length: int) -> bool:
        if int(tag) in _PIXEL_TAGS:
            reached[0] = True
            return True
        return False

    ds = read_partial(io.BytesIO(data), stop_when=stop_at_pixels, force=True)
    return ds, reached[0]


def _infer_transfer_syntax(ds: Dataset) -> bool:
    """Set file meta TransferSyntaxUID when it is absent; True if inferred."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return False
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    implicit, little = ds.original_encoding
    if implicit or implicit is None:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRBigEndian
    return True


def _apply_charset(ds: Dataset, key: str, charset: str | None) -> list[str]:
    """Check (and optionally override) SpecificCharacterSet; never raises."""
    codes: list[str] = []
    if charset is not None:
        if charset not in python_encoding:
            raise ValueError(
                f"charset override {charset!r} is not a DICOM defined term for "
                "(0008,0005) SpecificCharacterSet, e.g. 'ISO_IR 144'"
            )
        ds.SpecificCharacterSet = charset
        # Raw text elements are decoded with the encoding recorded at read time.
        implicit, little = ds.original_encoding
        ds.set_original_encoding(implicit, little, convert_encodings([charset]))
        codes.append("charset_overridden")
    try:
        values = ds.get("SpecificCharacterSet", None)
    except Exception:  # a malformed CS value must not fail the object
        values = None
        codes.append("charset_unreadable")
    if values is not None:
        names = [values] if isinstance(values, str) else list(values)
        unknown = [v for v in names if v and v.strip() not in python_encoding]
        if unknown:
            codes.append("charset_unknown")
            logger.warning(
                "charset_unknown: %s declares (0008,0005) SpecificCharacterSet "
                "%r, which is not a defined term; text falls back to the default "
                "repertoire (pixels are unaffected)",
                key,
                unknown,
            )
    return codes


def _read_dataset(
    data: bytes, *, key: str, charset: str | None = None
) -> tuple[Dataset, bool, list[str]]:
    """Read a whole object; return (dataset, ts_inferred, warning codes)."""
    layout, reason = sniff(data)
    if layout == "none":
        raise NotDicomError(
            f"{key} is not a DICOM object ({reason}); remove it from the study "
            "prefix or ignore it",
            key=key,
            code=reason,
        )
    try:
        ds: Dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise TruncatedError(
            f"{key} could not be parsed as DICOM ({type(exc).__name__}); the "
            "object is probably cut off or corrupt: upload it again",
            key=key,
            code="unparseable",
        ) from exc
    if not any(int(tag) in _PIXEL_TAGS for tag in ds.keys()):
        # pydicom drops the whole data set when encapsulated Pixel Data ends
        # before its sequence delimiter; the header parse tells us what was there.
        head, reached = _read_partial(data)
        if reached:
            raise TruncatedError(
                f"{key}: (7FE0,0010) PixelData ends before its last fragment or "
                "delimiter; the object is truncated, upload it again",
                key=key,
                code="pixel_data_truncated",
            )
        ds = head
    ts_inferred = _infer_transfer_syntax(ds)
    if ts_inferred:
        logger.debug("%s has no file meta; transfer syntax inferred", key)
    codes = _apply_charset(ds, key, charset)
    if ts_inferred:
        codes.append("transfer_syntax_inferred")
    return ds, ts_inferred, codes


def read_instance(data: bytes, *, key: str, charset: str | None = None) -> Dataset:
    """Read a whole DICOM object from bytes.

    Preamble-less data sets (no 128-byte preamble, no ``DICM``, no file meta)
    are read with force; the transfer syntax is inferred from the bytes and
    written to ``ds.file_meta.TransferSyntaxUID`` (use :func:`parse_header` or
    :func:`header_from_dataset` to see that it was inferred).

    Args:
        data: The complete object.
        key: Object key, used in messages.
        charset: Optional SpecificCharacterSet override (a DICOM defined term
            such as ``"ISO_IR 144"``) for sources known to mislabel their
            text; pixels never depend on it.

    Returns:
        The data set, Pixel Data included.

    Raises:
        NotDicomError: The bytes are not a DICOM data set.
        TruncatedError: The object cannot be parsed or its Pixel Data is cut.
        ValueError: ``charset`` is not a defined term.
    """
    ds, _, _ = _read_dataset(data, key=key, charset=charset)
    return ds


def parse_header(data: bytes, *, key: str, total_size: int) -> InstanceHeader:
    """Parse the header of an object from its first bytes.

    Parsing stops before top-level Pixel Data. When ``data`` ends before Pixel
    Data (or before the end of a data set without pixels) and the object is
    longer, :class:`NeedMoreBytes` asks for a longer prefix.

    Args:
        data: The object or a prefix of it.
        key: Object key.
        total_size: Size of the whole object in bytes.

    Returns:
        The header; ``status`` tells image / no_pixels / not_dicom / unreadable.

    Raises:
        NeedMoreBytes: The prefix is too short; ``wanted`` is the next length.
    """
    parsed = _parse_prefix(data, key, total_size)
    if parsed.ds is None:
        return InstanceHeader(
            key=key, size=total_size, status=parsed.status, reason=parsed.reason
        )
    return header_from_dataset(
        parsed.ds,
        key=key,
        size=total_size,
        status=parsed.status,
        reason=parsed.reason,
        ts_inferred=parsed.ts_inferred,
        warnings=parsed.codes,
    )


@dataclass(frozen=True)
class InstanceIdentity:
    """What an object is and which study it belongs to: `parse_header`'s
    ``status``, ``reason`` and ``study_uid``, without the other header facts."""

    status: HeaderStatus
    reason: str
    study_uid: str


def identify_instance(data: bytes, *, key: str) -> InstanceIdentity:
    """Tell the status and StudyInstanceUID of a whole object, cheaply.

    The same parse as `parse_header` (so the same status and study), without
    converting the other header elements: about half its time.

    Args:
        data: The whole object.
        key: Object key, used in log records.

    Returns:
        Status, reason code and StudyInstanceUID ("" when absent).
    """
    parsed = _parse_prefix(data, key, len(data))
    study_uid = ""
    if parsed.ds is not None:
        study_uid = str(parsed.ds.get("StudyInstanceUID", "") or "")
    return InstanceIdentity(parsed.status, parsed.reason, study_uid)


@dataclass(frozen=True)
class _Parsed:
    ds: Dataset | None
    status: HeaderStatus
    reason: str
    ts_inferred: bool = False
    codes: list[str] = field(default_factory=list)


def _parse_prefix(data: bytes, key: str, total_size: int) -> _Parsed:
    """Parse up to Pixel Data; ``ds`` is None when nothing could be parsed."""
    is_prefix = len(data) < total_size
    layout, reason = sniff(data)
    if layout == "none":
        if is_prefix and len(data) < 132:
            raise _need_more(key, data, total_size)
        return _Parsed(None, "not_dicom", reason)

    try:
        ds, reached = _read_partial(data)
    except Exception as exc:
        if is_prefix:
            raise _need_more(key, data, total_size) from exc
        logger.debug("%s: header parse failed: %s", key, type(exc).__name__)
        return _Parsed(None, "unreadable", "unparseable")
    if not reached and is_prefix:
        raise _need_more(key, data, total_size)

    ts_inferred = _infer_transfer_syntax(ds)
    codes = _apply_charset(ds, key, None)
    status, reason = _classify(ds, reached)
    return _Parsed(ds, status, reason, ts_inferred, codes)


def _need_more(key: str, data: bytes, total_size: int) -> NeedMoreBytes:
    wanted = min(total_size, max(2 * len(data), _MIN_PREFIX))
    return NeedMoreBytes(
        f"{key}: the first {len(data)} bytes end before Pixel Data; "
        f"fetch the first {wanted} bytes",
        wanted=wanted,
        key=key,
    )


def _classify(ds: Dataset, reached_pixels: bool) -> tuple[HeaderStatus, str]:
    """Status and reason code of a parsed header."""
    if reached_pixels:
        return "image", ""
    if len(ds) == 0:
        return "not_dicom", "empty_dataset"
    sop_class = str(ds.get("SOPClassUID", "") or _meta(ds, "MediaStorageSOPClassUID"))
    if sop_class == _DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        return "no_pixels", "dicomdir"
    if _is_image_sop_class(sop_class) or "Rows" in ds:
        # An image object that ends without Pixel Data: a cut-off upload.
        return "unreadable", "truncated_object"
    if str(ds.get("Modality", "")) == "SR" or "ContentSequence" in ds:
        return "no_pixels", "structured_report"
    return "no_pixels", "no_pixel_data"


def _meta(ds: Dataset, keyword: str) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get(keyword, "")) if meta is not None else ""


def _is_image_sop_class(uid: str) -> bool:
    if not uid:
        return False
    name = UID(uid).name
    return name.endswith("Image Storage") or "Image Storage -" in name


# -- header facts


def _value(
    ds: Dataset, keyword: str, conv: Callable[[Any], _T], bad: list[str]
) -> _T | None:
    """Read ``keyword`` and convert it; malformed values become None + a code."""
    try:
        raw = ds.get(keyword, None)
        if raw is None or raw == "":
            return None
        return conv(raw)
    except Exception:
        bad.append(f"bad_value_{keyword}")
        return None


def _floats(raw: Any) -> tuple[float, ...]:
    values = raw if isinstance(raw, list | tuple) or hasattr(raw, "__iter__") else [raw]
    if isinstance(raw, str | bytes):
        values = [raw]
    return tuple(float(v) for v in values)


def _first_int(raw: Any) -> int:
    if isinstance(raw, list | tuple) or (
        hasattr(raw, "__iter__") and not isinstance(raw, str | bytes)
    ):
        raw = next(iter(raw))
    return int(float(raw))


def _strings(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    return tuple(str(v) for v in raw)


def functional_group_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """Return the first item of ``sequence`` for ``frame`` (per-frame, else shared).

    Args:
        ds: An enhanced multi-frame data set.
        frame: Zero-based frame index.
        sequence: Functional group macro keyword, e.g. ``PlanePositionSequence``.

    Returns:
        The macro item, or None when neither group has it.
    """
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", None)
    if per_frame is not None and frame < len(per_frame):
        item = per_frame[frame].get(sequence, None)
        if item:
            return item[0]  # type: ignore[no-any-return]
    shared = ds.get("SharedFunctionalGroupsSequence", None)
    if shared:
        item = shared[0].get(sequence, None)
        if item:
            return item[0]  # type: ignore[no-any-return]
    return None


def header_from_dataset(
    ds: Dataset,
    *,
    key: str,
    size: int,
    status: HeaderStatus = "image",
    reason: str = "",
    ts_inferred: bool = False,
    warnings: list[str] | None = None,
) -> InstanceHeader:
    """Collect the header facts of a data set (no patient data).

    Args:
        ds: The data set (Pixel Data may be absent).
        key: Object key.
        size: Object size in bytes.
        status: Header status to record.
        reason: Reason code to record.
        ts_inferred: Whether the transfer syntax was inferred.
        warnings: Reason codes already collected.

    Returns:
        The header record.
    """
    bad: list[str] = list(warnings or [])
    image_type = _value(ds, "ImageType", _strings, bad) or ()
    position = _value(ds, "ImagePositionPatient", _floats, bad)
    orientation = _value(ds, "ImageOrientationPatient", _floats, bad)
    spacing = _value(ds, "PixelSpacing", _floats, bad)
    is_enhanced = "PerFrameFunctionalGroupsSequence" in ds
    if is_enhanced:
        try:
            pos_item = functional_group_item(ds, 0, "PlanePositionSequence")
            ori_item = functional_group_item(ds, 0, "PlaneOrientationSequence")
            pix_item = functional_group_item(ds, 0, "PixelMeasuresSequence")
            if pos_item is not None and position is None:
                position = _value(pos_item, "ImagePositionPatient", _floats, bad)
            if ori_item is not None and orientation is None:
                orientation = _value(ori_item, "ImageOrientationPatient", _floats, bad)
            if pix_item is not None and spacing is None:
                spacing = _value(pix_item, "PixelSpacing", _floats, bad)
        except Exception:
            bad.append("bad_functional_groups")
    meta_ts = _meta(ds, "TransferSyntaxUID")
    return InstanceHeader(
        key=key,
        size=size,
        status=status,
        reason=reason,
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        sop_uid=str(ds.get("SOPInstanceUID", "") or ""),
        sop_class_uid=str(
            ds.get("SOPClassUID", "") or _meta(ds, "MediaStorageSOPClassUID")
        ),
        modality=str(ds.get("Modality", "") or ""),
        series_number=_value(ds, "SeriesNumber", _first_int, bad),
        transfer_syntax=meta_ts,
        ts_inferred=ts_inferred,
        rows=_value(ds, "Rows", int, bad),
        columns=_value(ds, "Columns", int, bad),
        frames=_value(ds, "NumberOfFrames", _first_int, bad) or 1,
        samples_per_pixel=_value(ds, "SamplesPerPixel", int, bad),
        bits_allocated=_value(ds, "BitsAllocated", int, bad),
        bits_stored=_value(ds, "BitsStored", int, bad),
        high_bit=_value(ds, "HighBit", int, bad),
        pixel_representation=_value(ds, "PixelRepresentation", int, bad),
        photometric=str(ds.get("PhotometricInterpretation", "") or "").strip(),
        image_type=tuple(v.strip().upper() for v in image_type),
        position=position if position and len(position) == 3 else None,
        orientation=orientation if orientation and len(orientation) == 6 else None,
        pixel_spacing=spacing if spacing and len(spacing) == 2 else None,
        slice_thickness=_value(ds, "SliceThickness", float, bad),
        spacing_between_slices=_value(ds, "SpacingBetweenSlices", float, bad),
        instance_number=_value(ds, "InstanceNumber", _first_int, bad),
        acquisition_number=_value(ds, "AcquisitionNumber", _first_int, bad),
        echo_number=_value(ds, "EchoNumbers", _first_int, bad),
        temporal_position=_value(ds, "TemporalPositionIdentifier", _first_int, bad),
        rescale_slope=_value(ds, "RescaleSlope", float, bad),
        rescale_intercept=_value(ds, "RescaleIntercept", float, bad),
        is_mosaic="MOSAIC" in (v.strip().upper() for v in image_type),
        is_enhanced=is_enhanced,
        warnings=tuple(dict.fromkeys(bad)),
    )
