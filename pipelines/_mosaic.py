"""Unpack Siemens MOSAIC images into slices, using the CSA headers.

A mosaic stores the slices of one time point as tiles of a single image; the
number of tiles, the slice normal and the slice positions live in Siemens'
private CSA headers, which nibabel reads.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from math import ceil, sqrt
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

with warnings.catch_warnings():
    # nibabel.nicom announces at import that its DICOM readers are experimental;
    # we use only its CSA header parser.
    warnings.simplefilter("ignore")
    from nibabel.nicom import csareader

logger = logging.getLogger(__name__)

_ASCCONV_POSITION = re.compile(
    r"sSliceArray\.asSlice\[(\d+)\]\.sPosition\.d(Sag|Cor|Tra)\s*=\s*([-+0-9.eE]+)"
)
_AXIS = {"Sag": 0, "Cor": 1, "Tra": 2}


class MosaicError(ValueError):
    """The mosaic cannot be unpacked (missing or inconsistent CSA data)."""


@dataclass(frozen=True)
class Mosaic:
    """Slices unpacked from one mosaic image.

    Attributes:
        tiles: ``(n, rows, columns)`` slices, in the order Siemens tiled them.
        positions: ``(n, 3)`` LPS position of each slice's first voxel.
        warnings: Reason codes of recovered problems.
    """

    tiles: npt.NDArray[np.float32]
    positions: npt.NDArray[np.float64]
    warnings: tuple[str, ...]


def _csa(ds: Dataset, which: str) -> dict[str, Any] | None:
    try:
        header = csareader.get_csa_header(ds, which)  # type: ignore[no-untyped-call]
    except Exception as exc:  # malformed private data must not fail the object
        logger.debug("CSA %s header unreadable: %s", which, type(exc).__name__)
        return None
    return header if isinstance(header, dict) else None


def _ascconv_spacing(ds: Dataset, n: int) -> float | None:
    """Distance between slice centres from the series CSA protocol text."""
    series = _csa(ds, "series")
    if series is None:
        return None
    tag = series.get("tags", {}).get("MrPhoenixProtocol")
    items = tag.get("items") if tag else None
    if not items:
        return None
    centres = np.zeros((n, 3))
    seen = set()
    for match in _ASCCONV_POSITION.finditer(str(items[0])):
        index = int(match.group(1))
        if index < n:
            centres[index, _AXIS[match.group(2)]] = float(match.group(3))
            seen.add(index)
    if n < 2 or len(seen) < 1:
        return None
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    spacing = float(np.median(steps))
    return spacing if spacing > 0 else None


def unpack_mosaic(ds: Dataset, image: npt.NDArray[np.float32]) -> Mosaic:
    """Cut a decoded mosaic into its slices and place each slice in space.

    Args:
        ds: The mosaic's data set (CSA headers, orientation, position).
        image: Decoded mosaic, ``(rows, columns)``.

    Returns:
        The slices and the position of each.

    Raises:
        MosaicError: The number of tiles or the geometry cannot be found.
    """
    codes: list[str] = []
    csa = _csa(ds, "image")
    n: int | None = None
    if csa is not None:
        try:
            n = int(csareader.get_n_mosaic(csa))  # type: ignore[no-untyped-call]
        except Exception:
            n = None
    if n is None and (0x0019, 0x100A) in ds:
        n = int(ds[0x0019, 0x100A].value)
        codes.append("mosaic_count_from_private_tag")
    if not n or n < 1:
        raise MosaicError("NumberOfImagesInMosaic not found in the CSA header")

    rows, cols = image.shape
    side = ceil(sqrt(n))
    if rows % side or cols % side:
        raise MosaicError(f"{rows}x{cols} mosaic does not split into {side}x{side}")
    tile_rows, tile_cols = rows // side, cols // side
    tiles = np.stack(
        [
            image[
                (s // side) * tile_rows : (s // side + 1) * tile_rows,
                (s % side) * tile_cols : (s % side + 1) * tile_cols,
            ]
            for s in range(n)
        ]
    )

    try:
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    except (AttributeError, TypeError, ValueError) as exc:
        raise MosaicError("mosaic geometry attributes missing") from exc
    row_dir, col_dir = orientation[:3], orientation[3:]

    normal: npt.NDArray[np.float64] | None = None
    if csa is not None:
        try:
            found = csareader.get_slice_normal(csa)  # type: ignore[no-untyped-call]
            normal = None if found is None else np.asarray(found, dtype=float)
        except Exception:
            normal = None
    if normal is None or not np.isfinite(normal).all() or np.linalg.norm(normal) == 0:
        normal = np.cross(row_dir, col_dir)
        codes.append("slice_normal_from_orientation")
    normal = normal / np.linalg.norm(normal)

    spacing = _ascconv_spacing(ds, n)
    if spacing is None:
        between = ds.get("SpacingBetweenSlices", None)
        if between not in (None, ""):
            spacing = float(between)
            codes.append("mosaic_spacing_from_header")
        else:
            spacing = 1.0
            codes.append("slice_spacing_unknown")

    # ImagePositionPatient is the corner of the whole mosaic; move it to the
    # corner of one tile (half the surplus of rows and columns).
    first = (
        ipp
        + row_dir * col_spacing * (cols - tile_cols) / 2.0
        + col_dir * row_spacing * (rows - tile_rows) / 2.0
    )
    positions = np.stack([first + s * spacing * normal for s in range(n)])
    return Mosaic(tiles.astype(np.float32, copy=False), positions, tuple(codes))
