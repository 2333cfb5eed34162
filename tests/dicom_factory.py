"""Small synthetic DICOM Part 10 objects for tests outside the pipelines package.

Importable as ``dicom_factory`` from every test module: pytest puts this folder
on ``sys.path`` for ``tests/conftest.py``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def dicom_bytes(
    study_uid: str,
    *,
    sop_class: str = SECONDARY_CAPTURE,
    pixels: np.ndarray | bytes | None = None,
    shape: tuple[int, int] = (0, 0),
    bits: int = 8,
    **attributes: Any,
) -> bytes:
    """One instance of ``study_uid`` as Part 10 bytes (explicit VR little endian).

    Args:
        study_uid: StudyInstanceUID ("" for none).
        sop_class: SOP Class UID.
        pixels: A 2D unsigned array (its shape and item size give Rows,
            Columns and BitsAllocated), raw Pixel Data bytes with ``shape`` and
            ``bits``, or None for an object without pixels.
        shape: (Rows, Columns) of raw ``pixels``.
        bits: BitsAllocated of raw ``pixels``; BitsStored is the same.
        attributes: Further elements by keyword (``Modality="CT"``, ...).
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    if isinstance(pixels, np.ndarray):
        shape, bits = (pixels.shape[0], pixels.shape[1]), 8 * pixels.dtype.itemsize
        pixels = np.ascontiguousarray(pixels).tobytes()
    if pixels is not None:
        ds.Rows, ds.Columns = shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 0
        ds.PixelData = pixels
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
