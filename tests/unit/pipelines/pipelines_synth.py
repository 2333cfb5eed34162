"""Build small synthetic DICOM objects with pydicom for the pipelines tests."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

STUDY_UID = "1.2.826.0.1.3680043.8.498.1001"
SERIES_UID = "1.2.826.0.1.3680043.8.498.1002"


def _base(sop_class: UID, modality: str, series_uid: str, study_uid: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.Modality = modality
    ds.PatientName = "Synthetic^Test"
    ds.PatientID = "SYN-0"
    ds.SpecificCharacterSet = "ISO_IR 100"
    return ds


def _pixel_module(
    ds: Dataset,
    pixels: np.ndarray,
    *,
    bits_stored: int,
    signed: bool,
    photometric: str = "MONOCHROME2",
) -> None:
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16 if pixels.dtype.itemsize == 2 else 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def to_bytes(
    ds: Dataset,
    *,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    preamble: bool = True,
) -> bytes:
    """Serialise ``ds``; without ``preamble`` write a bare implicit VR data set."""
    buffer = io.BytesIO()
    if not preamble:
        ds.save_as(buffer, implicit_vr=True, little_endian=True)
        return buffer.getvalue()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ct_slice(
    z: float,
    pixels: np.ndarray | None = None,
    *,
    instance_number: int | None = None,
    slope: float = 1.0,
    intercept: float = -1024.0,
    bits_stored: int = 12,
    signed: bool = False,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    position: Sequence[float] | None = None,
    spacing: Sequence[float] = (0.5, 0.5),
    thickness: float | None = None,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    acquisition_number: int | None = None,
    series_uid: str = SERIES_UID,
    study_uid: str = STUDY_UID,
    extra: dict[str, Any] | None = None,
) -> Dataset:
    """A single-frame CT slice; ``pixels`` are stored values (16-bit)."""
    if pixels is None:
        pixels = np.full((8, 8), 1024, dtype=np.uint16)
    ds = _base(CTImageStorage, "CT", series_uid, study_uid)
    ds.ImageType = list(image_type)
    ds.ImagePositionPatient = list(position) if position is not None else [0, 0, z]
    ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = list(spacing)
    if thickness is not None:
        ds.SliceThickness = thickness
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    if acquisition_number is not None:
        ds.AcquisitionNumber = acquisition_number
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    _pixel_module(ds, pixels, bits_stored=bits_stored, signed=signed)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    return ds


def dx_image(
    pixels: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: int = 8
) -> Dataset:
    """A projection radiograph without patient geometry."""
    ds = _base(DigitalXRayImageStorageForPresentation, "DX", generate_uid(), STUDY_UID)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImagerPixelSpacing = [0.2, 0.2]
    _pixel_module(
        ds, pixels, bits_stored=bits_stored, signed=False, photometric=photometric
    )
    return ds


def enhanced_ct(
    zs: Sequence[float],
    stored: Sequence[int],
    slopes: Sequence[float],
    *,
    size: int = 8,
) -> Dataset:
    """Enhanced CT with frames at ``zs`` (any order), one value per frame."""
    ds = _base(EnhancedCTImageStorage, "CT", SERIES_UID, STUDY_UID)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.NumberOfFrames = len(zs)
    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    measures = Dataset()
    measures.PixelSpacing = [0.7, 0.7]
    measures.SliceThickness = 9.0
    shared.PixelMeasuresSequence = DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for z, slope in zip(zs, slopes, strict=True):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [0, 0, z]
        item.PlanePositionSequence = DicomSequence([position])
        transform = Dataset()
        transform.RescaleSlope = slope
        transform.RescaleIntercept = -1024
        transform.RescaleType = "HU"
        item.PixelValueTransformationSequence = DicomSequence([transform])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    frames = np.stack([np.full((size, size), v, dtype=np.uint16) for v in stored])
    _pixel_module(ds, frames, bits_stored=12, signed=False)
    return ds


def encapsulated(ds: Dataset, frames: list[bytes], transfer_syntax: UID) -> bytes:
    """Store ``frames`` (already encoded) as encapsulated Pixel Data."""
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    return to_bytes(ds, transfer_syntax=transfer_syntax)


__all__ = [
    "SERIES_UID",
    "STUDY_UID",
    "ImplicitVRLittleEndian",
    "ct_slice",
    "dx_image",
    "encapsulated",
    "enhanced_ct",
    "to_bytes",
]
