"""Decode the pixels of one instance into float32 arrays in real-world units.

Each instance is decoded with its own BitsStored / HighBit / PixelRepresentation
and its own RescaleSlope / RescaleIntercept (per frame for enhanced objects),
and only then promoted to float32, so instances of one series may differ in
all of these. MONOCHROME1 is inverted so that every grayscale output follows
the MONOCHROME2 convention (higher value = brighter). Colour output is RGB.

The transfer syntax and the Pixel Data length are checked before decoding, and
the decoded size is compared with :class:`DecodeLimits`, so a bad object is a
reported error with a reason code rather than a crashed worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from math import ceil
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array as _pydicom_pixel_array
from pydicom.uid import UID, JPEG2000TransferSyntaxes

from pipelines.dicom_io import functional_group_item
from pipelines.errors import (
    DecodeBudgetError,
    MissingTagError,
    TruncatedError,
    UndecodableError,
)

__all__ = [
    "DecodeLimits",
    "DecodedInstance",
    "check_decodable",
    "decode_instance",
    "estimate_decoded_bytes",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DecodeLimits:
    """Memory limits for decoding.

    Attributes:
        max_decoded_bytes: Largest float32 output allowed for one instance.
        max_study_bytes: Largest total float32 output for one study.
    """

    max_decoded_bytes: int = 1 << 30
    max_study_bytes: int = 8 << 30

    def __post_init__(self) -> None:
        if self.max_decoded_bytes <= 0 or self.max_study_bytes <= 0:
            raise ValueError("DecodeLimits values must be positive byte counts")


@dataclass(frozen=True)
class DecodedInstance:
    """Decoded pixels of one instance.

    Attributes:
        key: Object key.
        array: float32, ``(frames, rows, columns)`` or ``(frames, rows, columns,
            3)`` for RGB.
        transfer_syntax: Transfer syntax UID the pixels were decoded from.
        warnings: Reason codes of recovered problems.
    """

    key: str
    array: FloatArray
    transfer_syntax: str
    warnings: tuple[str, ...] = ()


def _required_int(ds: Dataset, keyword: str, tag: str, key: str) -> int:
    value = ds.get(keyword, None)
    if value is None or value == "":
        raise MissingTagError(
            f"{key}: {tag} {keyword} is missing; the pixels cannot be laid out",
            key=key,
            code=f"missing_{keyword}",
        )
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise MissingTagError(
            f"{key}: {tag} {keyword} has an unusable value",
            key=key,
            code=f"bad_{keyword}",
        ) from exc


def _frames(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def estimate_decoded_bytes(ds: Dataset) -> int:
    """Return the float32 size of the decoded pixels, from the header alone.

    Args:
        ds: Data set (Pixel Data may be absent).

    Returns:
        Rows x Columns x Frames x SamplesPerPixel x 4 (0 if unknown).
    """
    try:
        rows = int(ds.get("Rows", 0) or 0)
        cols = int(ds.get("Columns", 0) or 0)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        return 0
    return rows * cols * _frames(ds) * samples * 4


def _decoder_available(ts: UID) -> tuple[bool, str]:
    """Whether pixels in ``ts`` can be decoded here; (ok, missing plugins)."""
    decoder = get_decoder(ts)
    if decoder.is_available:
        return True, ""
    return False, "; ".join(decoder.missing_dependencies)


def check_decodable(
    ds: Dataset, *, key: str, limits: DecodeLimits | None = None
) -> None:
    """Check, before decoding, that the pixels can and may be decoded.

    Checks the required attributes, the decoded size against ``limits``, the
    transfer syntax and decoder, and the Pixel Data length (native) or frame
    fragments (encapsulated) against Rows x Columns x Frames x BitsAllocated.

    Args:
        ds: The whole data set.
        key: Object key, used in messages.
        limits: Decode limits (defaults when None).

    Raises:
        MissingTagError: Rows/Columns/BitsAllocated/Pixel Data are missing.
        DecodeBudgetError: The decoded size exceeds ``limits``.
        UndecodableError: The syntax is unsupported or its decoder is missing.
        TruncatedError: Pixel Data is shorter than the header requires.
    """
    limits = limits or DecodeLimits()
    rows = _required_int(ds, "Rows", "(0028,0010)", key)
    cols = _required_int(ds, "Columns", "(0028,0011)", key)
    bits = _required_int(ds, "BitsAllocated", "(0028,0100)", key)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = _frames(ds)
    if bits != 1 and (bits <= 0 or bits % 8):
        # Else the length check below would call a wrong header a truncation.
        raise UndecodableError(
            f"{key}: (0028,0100) BitsAllocated is {bits}, but DICOM allows 1 or a "
            "multiple of 8: the header is wrong; fix it at the source",
            key=key,
            code="bad_bits_allocated",
        )

    size = estimate_decoded_bytes(ds)
    if size > limits.max_decoded_bytes:
        raise DecodeBudgetError(
            f"{key}: decoding {frames} frame(s) of {rows}x{cols}x{samples} needs "
            f"{size} bytes, above max_decoded_bytes={limits.max_decoded_bytes}; "
            "raise the limit to process it",
            key=key,
        )

    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            return
        raise MissingTagError(
            f"{key}: (7FE0,0010) PixelData is missing", key=key, code="no_pixel_data"
        )

    ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
    try:
        ok, missing = _decoder_available(ts)
    except NotImplementedError as exc:
        raise UndecodableError(
            f"{key}: transfer syntax {ts} ({ts.name}) is not supported",
            key=key,
            code="unsupported_transfer_syntax",
        ) from exc
    if not ok:
        raise UndecodableError(
            f"{key}: no decoder for {ts.name} ({ts}) is installed ({missing}); "
            "install the pylibjpeg plug-ins in the worker image",
            key=key,
            code="decoder_missing",
        )

    if ts.is_encapsulated:
        _check_fragments(ds.PixelData, frames, key)
    else:
        expected = ceil(rows * cols * frames * samples * bits / 8)
        actual = len(ds.PixelData)
        if actual < expected:
            raise TruncatedError(
                f"{key}: (7FE0,0010) PixelData holds {actual} bytes but "
                f"{rows}x{cols}x{frames}x{samples} at {bits} bits needs {expected}; "
                "the object is truncated, upload it again",
                key=key,
                code="pixel_data_truncated",
            )


def _check_fragments(data: bytes, frames: int, key: str) -> None:
    try:
        count = sum(1 for _ in generate_frames(data, number_of_frames=frames))
    except Exception as exc:
        raise TruncatedError(
            f"{key}: the encapsulated (7FE0,0010) PixelData items are cut or "
            "malformed; upload the object again",
            key=key,
            code="fragments_truncated",
        ) from exc
    if count < frames:
        raise TruncatedError(
            f"{key}: encapsulated PixelData holds {count} of {frames} frames",
            key=key,
            code="fragments_missing",
        )


def decode_instance(
    ds: Dataset, *, key: str, limits: DecodeLimits | None = None
) -> DecodedInstance:
    """Decode one instance to float32 in real-world units (HU for CT).

    Args:
        ds: The whole data set (from :func:`pipelines.dicom_io.read_instance`).
        key: Object key, used in messages.
        limits: Decode limits (defaults when None).

    Returns:
        The decoded pixels, frames first, and recovered-problem codes.

    Raises:
        MissingTagError: Required attributes are missing.
        DecodeBudgetError: The decoded size exceeds ``limits``.
        UndecodableError: No decoder, or the decoder failed.
        TruncatedError: Pixel Data is shorter than the header requires.
    """
    check_decodable(ds, key=key, limits=limits)
    ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
    try:
        raw = _pydicom_pixel_array(ds)
    except Exception as exc:
        raise UndecodableError(
            f"{key}: decoding {ts.name} pixel data failed ({type(exc).__name__}); "
            "the codestream is corrupt or unsupported",
            key=key,
            code="decode_failed",
        ) from exc

    frames = _frames(ds)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip()
    if frames == 1 and raw.ndim == (3 if samples > 1 else 2):
        raw = raw[np.newaxis]
    warnings: list[str] = []

    if photometric == "PALETTE COLOR":
        rgb = np.asarray(apply_color_lut(raw, ds), dtype=np.float32)
        if rgb.max(initial=0) > 255:
            rgb /= 257.0
        return DecodedInstance(key, rgb, str(ts), ("palette_expanded",))
    if samples > 1:
        return DecodedInstance(key, raw.astype(np.float32), str(ts), ())

    if raw.dtype.kind in "iu":
        ints, changed = _fix_stored_bits(raw, ds)
        if changed:
            warnings.append(
                "j2k_signedness_corrected"
                if ts in JPEG2000TransferSyntaxes
                else "unused_bits_masked"
            )
    else:
        ints = raw
    slopes, intercepts = _rescale(ds, frames, warnings)
    out = ints.astype(np.float32)
    for f in range(frames):
        if slopes[f] != 1.0 or intercepts[f] != 0.0:
            out[f] = out[f] * np.float32(slopes[f]) + np.float32(intercepts[f])

    if photometric == "MONOCHROME1" and raw.dtype.kind in "iu":
        lo, hi = _stored_range(ds)
        for f in range(frames):
            ends = (lo * slopes[f] + intercepts[f], hi * slopes[f] + intercepts[f])
            out[f] = np.float32(ends[0] + ends[1]) - out[f]
        warnings.append("monochrome1_inverted")
    return DecodedInstance(key, out, str(ts), tuple(warnings))


def _stored_range(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.get("BitsStored", ds.BitsAllocated) or ds.BitsAllocated)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _fix_stored_bits(
    raw: npt.NDArray[np.integer], ds: Dataset
) -> tuple[npt.NDArray[np.integer], bool]:
    """Keep only BitsStored bits (at HighBit) and sign-extend when signed."""
    allocated = int(ds.BitsAllocated)
    stored = int(ds.get("BitsStored", allocated) or allocated)
    high_bit = int(ds.get("HighBit", stored - 1) or stored - 1)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if allocated == 1:
        return raw, False
    work: npt.NDArray[np.signedinteger[Any]] = raw.astype(
        np.int64 if allocated > 16 else np.int32
    )
    shift = high_bit + 1 - stored
    if shift > 0:
        work >>= shift
    work &= (1 << stored) - 1
    if signed:
        sign = 1 << (stored - 1)
        work ^= sign
        work -= sign
    changed = bool(np.any(work != raw))
    return work, changed


def _rescale(
    ds: Dataset, frames: int, warnings: list[str]
) -> tuple[list[float], list[float]]:
    """Per-frame slope and intercept (functional groups, else top level)."""
    slopes = [1.0] * frames
    intercepts = [0.0] * frames
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or (
        "SharedFunctionalGroupsSequence" in ds
    )
    for f in range(frames):
        source: Dataset = ds
        if enhanced:
            item = functional_group_item(ds, f, "PixelValueTransformationSequence")
            if item is not None:
                source = item
        try:
            slope = source.get("RescaleSlope", None)
            intercept = source.get("RescaleIntercept", None)
            slopes[f] = float(slope) if slope not in (None, "") else 1.0
            intercepts[f] = float(intercept) if intercept not in (None, "") else 0.0
        except (TypeError, ValueError):
            warnings.append("bad_rescale")
    if "ModalityLUTSequence" in ds:
        warnings.append("modality_lut_ignored")
    return slopes, intercepts
