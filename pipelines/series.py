"""Assemble the objects of one study into volumes and 2D image sets.

:func:`assemble_study` reads, decodes and groups every object of a study:

* objects are grouped by series (SeriesInstanceUID and SeriesNumber);
* every instance is exploded into frames, each with its own geometry: single
  frames from their top-level attributes, enhanced multi-frame objects from the
  Shared/Per-Frame Functional Groups, Siemens mosaics by unpacking their tiles;
* localizers and secondary captures are kept out of volumes; frames are split
  into stacks where orientation, image type, echo or matrix differ;
* slices are ordered by the projection of ImagePositionPatient on the slice
  normal (never InstanceNumber or object names), slice spacing comes from
  those positions (never SliceThickness), and positions that repeat make a
  time axis, ordered by temporal index / acquisition / instance number.

Array and geometry conventions (all reports):

* volume arrays are ``(T, Z, Y, X)`` float32: T time points, Z slices along
  the slice normal, Y rows, X columns; 2D sets are ``(N, Y, X)`` or
  ``(N, Y, X, 3)`` for RGB;
* ``spacing_mm`` is ``(x, y, z)``: column spacing (PixelSpacing[1]), row
  spacing (PixelSpacing[0]) and slice spacing (distance between successive
  slice planes); for 2D sets z is a nominal 1.0;
* ``direction`` is a 3x3 matrix (nested lists, row-major) whose columns are
  the unit vectors of the x, y and z array axes in the DICOM patient frame
  (LPS), and ``affine`` maps ``(x, y, z, 1)`` voxel indices to LPS millimetres
  (with gantry tilt its z column follows the actual slice step).
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from pipelines._mosaic import MosaicError, unpack_mosaic
from pipelines.dicom_io import (
    _classify,
    _read_dataset,
    functional_group_item,
    header_from_dataset,
)
from pipelines.errors import DecodeBudgetError, InvalidStudyError
from pipelines.pixels import DecodeLimits, decode_instance, estimate_decoded_bytes
from pipelines.records import InstanceHeader, series_key, study_key

__all__ = [
    "ExcludedInstance",
    "ObjectIssue",
    "SeriesImage",
    "SeriesKind",
    "SeriesReport",
    "StudyImages",
    "assemble_study",
]

logger = logging.getLogger(__name__)

SeriesKind = Literal["volume", "2d", "skipped"]
FloatArray = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float64]

_ORIENTATION_TOL = 1e-2
_POSITION_TOL_MM = 1e-2
_TILT_TOL_DEG = 0.5
_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


# -- public records


@dataclass(frozen=True)
class ObjectIssue:
    """An object that was skipped or failed, with a stable reason code.

    Attributes:
        key: Object key.
        code: Reason code (``dicomdir``, ``pixel_data_truncated``, ...).
        message: Explanation naming the object; never patient data.
    """

    key: str
    code: str
    message: str = ""

    def to_dict(self) -> dict[str, str]:
        """Return the issue as a JSON-ready dict."""
        return {"key": self.key, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class ExcludedInstance:
    """An instance (or frame) of a series left out of its array.

    Attributes:
        key: Object key.
        code: Why (``localizer``, ``secondary_capture``, ``duplicate_position``...).
    """

    key: str
    code: str

    def to_dict(self) -> dict[str, str]:
        """Return ``{"key", "code"}``."""
        return {"key": self.key, "code": self.code}


@dataclass
class SeriesReport:
    """What was made of one series (or of one part of a split series).

    See the module docstring for the axis, spacing and direction conventions.

    Attributes:
        series_uid: SeriesInstanceUID.
        modality: Modality.
        kind: ``volume``, ``2d`` or ``skipped``.
        shape: Shape of the array.
        spacing_mm: ``(x, y, z)``: column, row and slice spacing in mm.
        direction: 3x3, columns are the x, y, z axis directions (LPS).
        affine: 4x4 voxel index -> LPS mm.
        instances_used: Keys of the objects whose pixels are in the array.
        instances_excluded: Objects of the series left out, with a code.
        warnings: Stable reason codes (``slice_gap``, ``gantry_tilt``...).
        transfer_syntaxes: Transfer syntax UIDs of the objects used.
        series_number: SeriesNumber.
        part: Index of this part when the series was split (else 0).
        role: ``image``, ``localizer`` or ``derived`` (secondary captures).
        skip_code: Reason code when ``kind`` is ``skipped``.
    """

    series_uid: str
    modality: str
    kind: SeriesKind
    shape: tuple[int, ...] = ()
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    direction: list[list[float]] = field(default_factory=lambda: np.eye(3).tolist())
    affine: list[list[float]] = field(default_factory=lambda: np.eye(4).tolist())
    instances_used: list[str] = field(default_factory=list)
    instances_excluded: list[ExcludedInstance] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    transfer_syntaxes: list[str] = field(default_factory=list)
    series_number: int | None = None
    part: int = 0
    role: str = "image"
    skip_code: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (plain floats, ints and strings)."""
        return {
            "series_uid": self.series_uid,
            "series_key": series_key(self.series_uid) if self.series_uid else "",
            "series_number": self.series_number,
            "part": self.part,
            "modality": self.modality,
            "kind": self.kind,
            "role": self.role,
            "skip_code": self.skip_code,
            "shape": [int(v) for v in self.shape],
            "spacing_mm": [float(v) for v in self.spacing_mm],
            "direction": [[float(v) for v in row] for row in self.direction],
            "affine": [[float(v) for v in row] for row in self.affine],
            "instances_used": list(self.instances_used),
            "instances_excluded": [e.to_dict() for e in self.instances_excluded],
            "warnings": list(self.warnings),
            "transfer_syntaxes": list(self.transfer_syntaxes),
        }


@dataclass
class SeriesImage:
    """The pixels of one series (part) and their report.

    Attributes:
        series_uid: SeriesInstanceUID.
        kind: ``volume`` (array ``(T, Z, Y, X)``), ``2d`` (``(N, Y, X)`` or
            ``(N, Y, X, 3)``) or ``skipped`` (empty array).
        array: float32 pixels in real-world units, MONOCHROME2 convention.
        report: Geometry and provenance.
    """

    series_uid: str
    kind: SeriesKind
    array: FloatArray
    report: SeriesReport

    @property
    def is_rgb(self) -> bool:
        """True for a 2D set of RGB images."""
        return self.kind == "2d" and self.array.ndim == 4


@dataclass
class StudyImages:
    """Everything made of one study.

    Attributes:
        series: Volumes, 2D sets and skipped series.
        skipped: Objects that are not images (DICOMDIR, SR, non-DICOM files).
        errors: Objects that should be images but cannot be used.
        study_uid: StudyInstanceUID (use :attr:`study_key` in logs).
        study_uids: Every non-empty StudyInstanceUID of the objects that
            became images (one, unless objects of several studies were mixed).
    """

    series: list[SeriesImage] = field(default_factory=list)
    skipped: list[ObjectIssue] = field(default_factory=list)
    errors: list[ObjectIssue] = field(default_factory=list)
    study_uid: str = ""
    study_uids: set[str] = field(default_factory=set)

    @property
    def study_key(self) -> str:
        """Short hash of the StudyInstanceUID (``""`` when unknown)."""
        return study_key(self.study_uid) if self.study_uid else ""

    def to_dict(self) -> dict[str, Any]:
        """Return the reports and issues (no pixels) as a JSON-ready dict."""
        return {
            "study_key": self.study_key,
            "series": [s.report.to_dict() for s in self.series],
            "skipped": [i.to_dict() for i in self.skipped],
            "errors": [i.to_dict() for i in self.errors],
        }


# -- frames


@dataclass
class _Frame:
    """One 2D image of an instance, with its own geometry and ordering keys."""

    key: str
    index: int
    pixels: FloatArray
    header: InstanceHeader
    position: Vector | None
    orientation: Vector | None
    spacing: tuple[float, float] | None
    temporal: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def is_localizer(self) -> bool:
        return self.header.is_localizer

    @property
    def is_secondary(self) -> bool:
        image_type = self.header.image_type
        return self.header.sop_class_uid.startswith(_SECONDARY_CAPTURE_PREFIX) or (
            len(image_type) > 1 and image_type[1] == "SECONDARY"
        )

    @property
    def has_geometry(self) -> bool:
        return self.position is not None and self.orientation is not None

    @property
    def is_rgb(self) -> bool:
        return self.pixels.ndim == 3

    def time_order(self) -> tuple[int, int, int, int, str]:
        h = self.header
        return (
            self.temporal if self.temporal is not None else -1,
            h.acquisition_number if h.acquisition_number is not None else -1,
            h.instance_number if h.instance_number is not None else -1,
            self.index,
            self.key,
        )


@dataclass
class _Instance:
    header: InstanceHeader
    frames: list[_Frame]
    mosaic_failed: str = ""


def _vector(values: Any) -> Vector | None:
    try:
        arr = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if np.isfinite(arr).all() else None


def _spacing_of(
    source: Dataset | None, warnings: list[str]
) -> tuple[float, float] | None:
    if source is None:
        return None
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = source.get(keyword, None)
        vec = _vector(value) if value not in (None, "") else None
        if vec is not None and len(vec) == 2 and (vec > 0).all():
            if keyword == "ImagerPixelSpacing":
                warnings.append("imager_pixel_spacing_used")
            return float(vec[0]), float(vec[1])
    return None


def _explode(
    ds: Dataset, header: InstanceHeader, array: FloatArray, codes: list[str]
) -> _Instance:
    """Split a decoded instance into frames with per-frame geometry."""
    key = header.key
    if header.is_mosaic:
        try:
            mosaic = unpack_mosaic(ds, array[0])
        except MosaicError as exc:
            logger.warning("mosaic_not_unpacked: %s: %s", key, exc)
            return _Instance(header, [], mosaic_failed=str(exc))
        orientation = _vector(header.orientation) if header.orientation else None
        spacing = _spacing_of(ds, codes)
        frames = [
            _Frame(
                key,
                s,
                mosaic.tiles[s],
                header,
                mosaic.positions[s],
                orientation,
                spacing,
                warnings=(*codes, *mosaic.warnings, "mosaic_unpacked"),
            )
            for s in range(mosaic.tiles.shape[0])
        ]
        return _Instance(header, frames)

    if header.is_enhanced:
        frames = []
        for f in range(array.shape[0]):
            pos_item = functional_group_item(ds, f, "PlanePositionSequence")
            ori_item = functional_group_item(ds, f, "PlaneOrientationSequence")
            pix_item = functional_group_item(ds, f, "PixelMeasuresSequence")
            content = functional_group_item(ds, f, "FrameContentSequence")
            temporal = content.get("TemporalPositionIndex", None) if content else None
            frames.append(
                _Frame(
                    key,
                    f,
                    array[f],
                    header,
                    _vector(pos_item.ImagePositionPatient) if pos_item else None,
                    _vector(ori_item.ImageOrientationPatient) if ori_item else None,
                    _spacing_of(pix_item, codes),
                    temporal=int(temporal) if temporal not in (None, "") else None,
                    warnings=tuple(codes),
                )
            )
        return _Instance(header, frames)

    position = _vector(header.position) if header.position else None
    orientation = _vector(header.orientation) if header.orientation else None
    spacing = _spacing_of(ds, codes)
    frames = [
        _Frame(
            key,
            f,
            array[f],
            header,
            position,
            orientation,
            spacing,
            temporal=header.temporal_position,
            warnings=tuple(codes),
        )
        for f in range(array.shape[0])
    ]
    return _Instance(header, frames)


# -- reading the study


def _load(
    objects: Sequence[tuple[str, bytes]], limits: DecodeLimits, study: StudyImages
) -> list[_Instance]:
    """Read and decode every object; file skips and errors in ``study``."""
    instances: list[_Instance] = []
    total = 0
    for key, data in objects:
        try:
            ds, ts_inferred, codes = _read_dataset(data, key=key)
            if not any(
                k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
            ):
                status, reason = _classify(ds, False)
                issue = ObjectIssue(key, reason, f"{key} has no pixel data ({reason})")
                if status == "unreadable":
                    study.errors.append(issue)
                else:
                    study.skipped.append(issue)
                logger.debug("skipped %s: %s", key, reason)
                continue
            header = header_from_dataset(
                ds, key=key, size=len(data), ts_inferred=ts_inferred, warnings=codes
            )
            study.study_uid = study.study_uid or header.study_uid
            total += estimate_decoded_bytes(ds)
            if total > limits.max_study_bytes:
                raise DecodeBudgetError(
                    f"{key}: the study's decoded pixels would exceed "
                    f"max_study_bytes={limits.max_study_bytes}",
                    key=key,
                    code="study_budget_exceeded",
                )
            decoded = decode_instance(ds, key=key, limits=limits)
            instances.append(
                _explode(ds, header, decoded.array, [*codes, *decoded.warnings])
            )
            if header.study_uid:
                study.study_uids.add(header.study_uid)
        except InvalidStudyError as exc:
            target = study.skipped if exc.code in _NOT_DICOM_CODES else study.errors
            target.append(ObjectIssue(key, exc.code, exc.message))
            logger.debug("%s: %s", key, exc.code)
        except Exception as exc:  # one bad object never fails the others
            logger.warning("unexpected error on %s", key, exc_info=True)
            study.errors.append(
                ObjectIssue(key, "internal_error", f"{key}: {type(exc).__name__}")
            )
    return instances


_NOT_DICOM_CODES = frozenset(
    {
        "empty_object",
        "appledouble",
        "jpeg_file",
        "text_file",
        "other_file_format",
        "unknown_format",
    }
)


def assemble_study(
    objects: Sequence[tuple[str, bytes]], limits: DecodeLimits | None = None
) -> StudyImages:
    """Turn the objects of one study into volumes and 2D image sets.

    One bad object never fails the others: it is recorded in ``errors`` (or in
    ``skipped`` when it is simply not an image) with a reason code.

    Args:
        objects: ``(key, bytes)`` of every object of the study.
        limits: Decode limits (defaults when None).

    Returns:
        The series, the skipped objects and the failed objects.
    """
    limits = limits or DecodeLimits()
    study = StudyImages()
    instances = _load(objects, limits, study)

    groups: dict[tuple[str, int | None], list[_Instance]] = defaultdict(list)
    for inst in instances:
        groups[(inst.header.series_uid, inst.header.series_number)].append(inst)

    def order(item: tuple[str, int | None]) -> tuple[int, str]:
        return (item[1] if item[1] is not None else 1 << 30, item[0])

    for group_key in sorted(groups, key=order):
        study.series.extend(_assemble_series(groups[group_key]))
    logger.debug(
        "study %s: %d series, %d skipped, %d errors",
        study.study_key,
        len(study.series),
        len(study.skipped),
        len(study.errors),
    )
    return study


# -- one series


def _assemble_series(instances: list[_Instance]) -> list[SeriesImage]:
    first = instances[0].header
    failed = [i for i in instances if i.mosaic_failed]
    if failed:
        report = SeriesReport(
            series_uid=first.series_uid,
            modality=first.modality,
            kind="skipped",
            series_number=first.series_number,
            skip_code="mosaic_not_unpacked",
            warnings=["mosaic_not_unpacked"],
            instances_excluded=[
                ExcludedInstance(i.header.key, "mosaic_not_unpacked") for i in failed
            ],
            transfer_syntaxes=sorted({i.header.transfer_syntax for i in instances}),
        )
        return [
            SeriesImage(first.series_uid, "skipped", np.zeros((0,), np.float32), report)
        ]

    frames = _dedupe([f for inst in instances for f in inst.frames])
    excluded: list[ExcludedInstance] = list(frames.excluded)
    candidates: list[_Frame] = []
    others: list[_Frame] = []
    for frame in frames.kept:
        if frame.is_localizer:
            others.append(frame)
        elif frame.is_secondary:
            others.append(frame)
        elif frame.has_geometry and not frame.is_rgb:
            candidates.append(frame)
        else:
            others.append(frame)

    stacks = _split_stacks(candidates)
    volume_stacks = [s for s in stacks if _distinct_positions(s.frames) >= 2]
    if not volume_stacks:
        return _two_d_sets(frames.kept, excluded)

    main = volume_stacks[0]
    capable = {id(s) for s in volume_stacks}
    for stack in stacks:
        if id(stack) not in capable:
            code = _difference(stack, main)
            excluded.extend(ExcludedInstance(f.key, code) for f in stack.frames)
    for frame in others:
        code = (
            "localizer"
            if frame.is_localizer
            else "secondary_capture"
            if frame.is_secondary
            else "no_geometry"
        )
        excluded.append(ExcludedInstance(frame.key, code))

    results: list[SeriesImage] = []
    for stack in volume_stacks:
        extra = [] if stack is main else [f"series_split_{_difference(stack, main)}"]
        for built in _build_volumes(stack.frames):
            built.report.warnings[:0] = extra
            results.append(built)
    for part, image in enumerate(results):
        image.report.part = part
        if len(results) > 1 and "series_split" not in image.report.warnings:
            image.report.warnings.append("series_split")
    results[0].report.instances_excluded.extend(_dedupe_excluded(excluded))
    return results


@dataclass
class _Dedupe:
    kept: list[_Frame]
    excluded: list[ExcludedInstance]


def _dedupe(frames: list[_Frame]) -> _Dedupe:
    """Drop frames whose (SOPInstanceUID, frame) was already seen."""
    seen: set[tuple[str, int]] = set()
    kept: list[_Frame] = []
    excluded: list[ExcludedInstance] = []
    for frame in frames:
        uid = frame.header.sop_uid
        ident = (uid, frame.index)
        if uid and ident in seen:
            excluded.append(ExcludedInstance(frame.key, "duplicate_instance"))
            continue
        seen.add(ident)
        kept.append(frame)
    return _Dedupe(kept, excluded)


def _dedupe_excluded(items: list[ExcludedInstance]) -> list[ExcludedInstance]:
    return list(dict.fromkeys(items))


@dataclass(eq=False)
class _Stack:
    orientation: Vector
    image_type: tuple[str, ...]
    echo: int | None
    shape: tuple[int, ...]
    frames: list[_Frame]


def _split_stacks(frames: list[_Frame]) -> list[_Stack]:
    """Group frames by orientation, image type, echo and matrix; largest first."""
    stacks: list[_Stack] = []
    for frame in frames:
        assert frame.orientation is not None
        for stack in stacks:
            if (
                stack.image_type == frame.header.image_type
                and stack.echo == frame.header.echo_number
                and stack.shape == frame.pixels.shape
                and np.abs(stack.orientation - frame.orientation).max()
                < _ORIENTATION_TOL
            ):
                stack.frames.append(frame)
                break
        else:
            stacks.append(
                _Stack(
                    frame.orientation,
                    frame.header.image_type,
                    frame.header.echo_number,
                    frame.pixels.shape,
                    [frame],
                )
            )
    stacks.sort(key=lambda s: -len(s.frames))
    return stacks


def _difference(stack: _Stack, main: _Stack) -> str:
    if np.abs(stack.orientation - main.orientation).max() >= _ORIENTATION_TOL:
        return "orientation_differs"
    if stack.image_type != main.image_type:
        return "image_type_differs"
    if stack.echo != main.echo:
        return "echo_differs"
    return "matrix_differs"


def _normal(orientation: Vector) -> Vector:
    normal = np.cross(orientation[:3], orientation[3:])
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 0 else np.array([0.0, 0.0, 1.0])


def _proj(frame: _Frame, normal: Vector) -> float:
    assert frame.position is not None
    return float(np.dot(frame.position, normal))


def _distinct_positions(frames: list[_Frame]) -> int:
    if not frames or frames[0].orientation is None:
        return 0
    normal = _normal(frames[0].orientation)
    proj = sorted(_proj(f, normal) for f in frames if f.position is not None)
    return 1 + sum(1 for a, b in itertools.pairwise(proj) if b - a > _POSITION_TOL_MM)


def _cluster(frames: list[_Frame], normal: Vector) -> list[list[_Frame]]:
    """Group frames by slice position along ``normal``, ascending."""
    ordered = sorted(frames, key=lambda f: _proj(f, normal))
    clusters: list[list[_Frame]] = []
    last = -np.inf
    for frame in ordered:
        proj = _proj(frame, normal)
        if clusters and proj - last <= _POSITION_TOL_MM:
            clusters[-1].append(frame)
        else:
            clusters.append([frame])
        last = proj
    return clusters


def _build_volumes(frames: list[_Frame]) -> list[SeriesImage]:
    """Order one stack into (T, Z) frames; split by acquisition if needed."""
    assert frames[0].orientation is not None
    normal = _normal(frames[0].orientation)
    clusters = _cluster(frames, normal)
    counts = {len(c) for c in clusters}
    if len(counts) > 1:
        acquisitions = {f.header.acquisition_number for f in frames}
        if len(acquisitions) > 1:
            parts: list[SeriesImage] = []
            by_acq: dict[int | None, list[_Frame]] = defaultdict(list)
            for frame in frames:
                by_acq[frame.header.acquisition_number].append(frame)
            subsets = [
                by_acq[a] for a in sorted(by_acq, key=lambda a: (a is None, a or 0))
            ]
            if all(_distinct_positions(s) >= 2 for s in subsets):
                for subset in subsets:
                    for image in _build_volumes(subset):
                        image.report.warnings.insert(0, "acquisitions_split")
                        parts.append(image)
                return parts
    return [_volume(clusters, normal)]


def _volume(clusters: list[list[_Frame]], normal: Vector) -> SeriesImage:
    warnings: list[str] = []
    excluded: list[ExcludedInstance] = []
    for cluster in clusters:
        cluster.sort(key=_Frame.time_order)
    time_points = min(len(c) for c in clusters)
    if any(len(c) != time_points for c in clusters):
        warnings.append("duplicate_positions")
        if time_points > 1:
            warnings.append("incomplete_time_series")
        for cluster in clusters:
            excluded.extend(
                ExcludedInstance(f.key, "duplicate_position")
                for f in cluster[time_points:]
            )
            del cluster[time_points:]

    grid = [[cluster[t] for cluster in clusters] for t in range(time_points)]
    array = np.stack([np.stack([f.pixels for f in row]) for row in grid])
    used = [f for row in grid for f in row]
    first = grid[0]

    proj = np.array([_proj(f, normal) for f in first])
    steps = np.diff(proj)
    z_spacing = float(np.median(steps))
    if np.abs(steps - z_spacing).max() > max(0.01 * z_spacing, 1e-3):
        warnings.append("uneven_spacing")
    if (steps > 1.5 * z_spacing).any():
        warnings.append("slice_gap")

    assert first[0].position is not None and first[-1].position is not None
    origin = first[0].position
    step = (first[-1].position - origin) / (len(first) - 1)
    cos_tilt = float(np.dot(step, normal) / np.linalg.norm(step))
    if np.degrees(np.arccos(min(1.0, abs(cos_tilt)))) > _TILT_TOL_DEG:
        warnings.append("gantry_tilt")

    report = _report(used, "volume", array.shape, origin, normal, step, z_spacing)
    report.warnings = [*warnings, *report.warnings]
    report.instances_excluded.extend(excluded)
    return SeriesImage(report.series_uid, "volume", array, report)


def _report(
    used: list[_Frame],
    kind: SeriesKind,
    shape: tuple[int, ...],
    origin: Vector | None,
    normal: Vector | None,
    step: Vector | None,
    z_spacing: float,
) -> SeriesReport:
    """Geometry and provenance shared by volumes and 2D sets."""
    first = used[0]
    warnings: list[str] = []
    spacing = first.spacing
    if spacing is None:
        spacing = (1.0, 1.0)
        warnings.append("pixel_spacing_missing")
    if any(f.spacing != first.spacing for f in used):
        warnings.append("pixel_spacing_differs")
    if first.orientation is not None:
        row_dir, col_dir = first.orientation[:3], first.orientation[3:]
        normal = _normal(first.orientation) if normal is None else normal
    else:
        row_dir, col_dir, normal = np.eye(3)
    step = normal * z_spacing if step is None else step
    origin = np.zeros(3) if origin is None else origin

    affine = np.eye(4)
    affine[:3, 0] = row_dir * spacing[1]
    affine[:3, 1] = col_dir * spacing[0]
    affine[:3, 2] = step
    affine[:3, 3] = origin
    direction = np.stack([row_dir, col_dir, normal], axis=1)

    for frame in used:
        warnings.extend(frame.warnings)
    header = first.header
    return SeriesReport(
        series_uid=header.series_uid,
        modality=header.modality,
        kind=kind,
        shape=tuple(int(v) for v in shape),
        spacing_mm=(float(spacing[1]), float(spacing[0]), float(z_spacing)),
        direction=direction.tolist(),
        affine=affine.tolist(),
        instances_used=list(dict.fromkeys(f.key for f in used)),
        warnings=list(dict.fromkeys(warnings)),
        transfer_syntaxes=sorted({f.header.transfer_syntax for f in used}),
        series_number=header.series_number,
    )


def _two_d_sets(
    frames: list[_Frame], excluded: list[ExcludedInstance]
) -> list[SeriesImage]:
    """Images that do not form a volume, one set per matrix size."""
    by_shape: dict[tuple[int, ...], list[_Frame]] = defaultdict(list)
    for frame in sorted(
        frames,
        key=lambda f: (
            f.header.instance_number if f.header.instance_number is not None else -1,
            f.key,
            f.index,
        ),
    ):
        by_shape[frame.pixels.shape].append(frame)
    results: list[SeriesImage] = []
    for part, shape in enumerate(sorted(by_shape, key=lambda s: -len(by_shape[s]))):
        used = by_shape[shape]
        array = np.stack([f.pixels for f in used])
        report = _report(used, "2d", array.shape, used[0].position, None, None, 1.0)
        report.part = part
        if all(f.is_localizer for f in used):
            report.role = "localizer"
        elif all(f.is_secondary for f in used):
            report.role = "derived"
        if len(by_shape) > 1:
            report.warnings.append("series_split_matrix_differs")
        results.append(SeriesImage(report.series_uid, "2d", array, report))
    results[0].report.instances_excluded.extend(_dedupe_excluded(excluded))
    return results
