"""Demo studies that any machine has: pydicom's test files and a CT phantom.

The phantom is a generated multi-slice CT study with correct geometry and HU
values (air, soft tissue, bone, fluid), labelled synthetic in its descriptions
and patient fields. Nothing here describes a person.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

__all__ = ["build_demo_folder", "pydicom_test_files", "write_phantom_ct"]

logger = logging.getLogger(__name__)

_PHANTOM_NAMESPACE = uuid.UUID("5b0c6f9e-3d1a-4f0e-9a57-6d2f1c0e7a31")


def pydicom_test_files() -> Path:
    """Return the folder of real DICOM test files shipped in pydicom's wheel."""
    return Path(pydicom.__file__).parent / "data" / "test_files"


def _ellipsoid(
    grid: tuple[np.ndarray, np.ndarray, np.ndarray],
    center: tuple[float, float, float],
    radii: tuple[float, float, float],
) -> np.ndarray:
    z, y, x = grid
    return (
        ((x - center[0]) / radii[0]) ** 2
        + ((y - center[1]) / radii[1]) ** 2
        + ((z - center[2]) / radii[2]) ** 2
    ) <= 1.0


def phantom_hu(slices: int, size: int, pixel_mm: float, step_mm: float) -> np.ndarray:
    """Return a head-like phantom in HU, shape ``(slices, size, size)``."""
    half = size * pixel_mm / 2
    zs = (np.arange(slices) - (slices - 1) / 2) * step_mm
    ys = (np.arange(size) + 0.5) * pixel_mm - half
    grid = np.meshgrid(zs, ys, ys, indexing="ij")
    volume = np.full((slices, size, size), -1000.0, dtype=np.float32)
    extent = slices * step_mm / 2 * 0.95
    volume[_ellipsoid(grid, (0, 0, 0), (half * 0.8, half * 0.9, extent))] = 1000.0
    volume[_ellipsoid(grid, (0, 0, 0), (half * 0.72, half * 0.82, extent * 0.93))] = (
        40.0
    )
    volume[
        _ellipsoid(
            grid, (-half * 0.2, -half * 0.1, 0), (half * 0.1, half * 0.25, extent * 0.5)
        )
    ] = 5.0
    volume[
        _ellipsoid(
            grid, (half * 0.2, -half * 0.1, 0), (half * 0.1, half * 0.25, extent * 0.5)
        )
    ] = 5.0
    volume[
        _ellipsoid(grid, (0, half * 0.4, 0), (half * 0.12, half * 0.12, extent * 0.3))
    ] = 70.0
    return volume


def _base_dataset(
    path: Path, sop_uid: str, study_uid: str, series_uid: str, frame_uid: str
) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "PHANTOM-0001"
    ds.StudyDescription = "SYNTHETIC CT PHANTOM - not a patient"
    ds.Modality = "CT"
    ds.Manufacturer = "medray synthetic"
    ds.FrameOfReferenceUID = frame_uid
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    return ds


def _store_pixels(ds: FileDataset, hu: np.ndarray) -> None:
    stored = np.clip(np.rint(hu + 1024), 0, 4095).astype(np.uint16)
    ds.Rows, ds.Columns = stored.shape
    ds.PixelData = stored.tobytes()


def write_phantom_ct(
    folder: Path,
    slices: int = 32,
    size: int = 128,
    pixel_mm: float = 1.6,
    step_mm: float = 2.5,
) -> str:
    """Write a synthetic CT study: an axial series and a coronal localizer.

    Args:
        folder: Output folder (created).
        slices: Axial slices.
        size: Rows and columns of each slice.
        pixel_mm: In-plane pixel spacing.
        step_mm: Distance between slice positions (thickness is written larger,
            as on real scanners, so readers must use positions).

    Returns:
        The StudyInstanceUID.
    """
    folder.mkdir(parents=True, exist_ok=True)

    def uid(*parts: object) -> str:
        # A 2.25 UUID-derived UID, name-based so that the same phantom gets
        # the same UIDs on every machine (and results can be reused).
        name = "/".join(map(str, parts))
        return f"2.25.{uuid.uuid5(_PHANTOM_NAMESPACE, name).int}"

    study_uid = uid("study", slices, size)
    axial_uid = uid("series", "axial", slices, size)
    frame_uid = uid("frame", slices, size)
    volume = phantom_hu(slices, size, pixel_mm, step_mm)
    origin = -size * pixel_mm / 2
    order = np.random.default_rng(7).permutation(slices)
    for number, index in enumerate(order, start=1):
        path = folder / f"axial_{number:03d}.dcm"
        ds = _base_dataset(path, uid("sop", index), study_uid, axial_uid, frame_uid)
        ds.SeriesDescription = "SYNTHETIC AXIAL"
        ds.SeriesNumber = 2
        ds.InstanceNumber = number
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        z = float((index - (slices - 1) / 2) * step_mm)
        ds.ImagePositionPatient = [origin, origin, z]
        ds.PixelSpacing = [pixel_mm, pixel_mm]
        ds.SliceThickness = step_mm * 2
        _store_pixels(ds, volume[index])
        ds.save_as(path, enforce_file_format=True)
    scout = folder / "localizer_001.dcm"
    ds = _base_dataset(
        scout, uid("sop", "scout"), study_uid, uid("series", "scout"), frame_uid
    )
    ds.SeriesDescription = "SYNTHETIC LOCALIZER"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.ImagePositionPatient = [origin, 0.0, slices * step_mm / 2]
    ds.PixelSpacing = [step_mm, pixel_mm]
    projection = np.clip((volume + 1000.0).mean(axis=1) - 1000.0, -1000, 3000)[::-1]
    _store_pixels(ds, projection)
    ds.save_as(scout, enforce_file_format=True)
    logger.info("wrote synthetic CT phantom: %d slices of %dx%d", slices, size, size)
    return study_uid


def build_demo_folder(dest: Path) -> Path:
    """Fill ``dest`` with pydicom's test files and a CT phantom study.

    Returns:
        ``dest``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        pydicom_test_files(), dest / "pydicom_test_files", dirs_exist_ok=True
    )
    write_phantom_ct(dest / "synthetic_ct_phantom")
    return dest
