"""DICOM objects to correct arrays, and arrays to model input.

This package never imports ray or models. The package root adds only a
NullHandler to its logger; applications configure logging.
"""

import logging

from pipelines.dicom_io import (
    InstanceIdentity,
    header_from_dataset,
    identify_instance,
    parse_header,
    read_instance,
    sniff,
)
from pipelines.errors import (
    DecodeBudgetError,
    InvalidStudyError,
    MissingTagError,
    NeedMoreBytes,
    NotDicomError,
    PipelineError,
    TruncatedError,
    UndecodableError,
)
from pipelines.pixels import DecodedInstance, DecodeLimits, decode_instance
from pipelines.records import InstanceHeader, series_key, study_key
from pipelines.series import (
    ExcludedInstance,
    ObjectIssue,
    SeriesImage,
    SeriesReport,
    StudyImages,
    assemble_study,
)
from pipelines.transforms import (
    Compose,
    Normalize,
    Resize,
    SampleSlices,
    ScalePercentile,
    Window,
    build_input,
    resample_to_spacing,
)

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Compose",
    "DecodeBudgetError",
    "DecodeLimits",
    "DecodedInstance",
    "ExcludedInstance",
    "InstanceHeader",
    "InstanceIdentity",
    "InvalidStudyError",
    "MissingTagError",
    "NeedMoreBytes",
    "Normalize",
    "NotDicomError",
    "ObjectIssue",
    "PipelineError",
    "Resize",
    "SampleSlices",
    "ScalePercentile",
    "SeriesImage",
    "SeriesReport",
    "StudyImages",
    "TruncatedError",
    "UndecodableError",
    "Window",
    "assemble_study",
    "build_input",
    "decode_instance",
    "header_from_dataset",
    "identify_instance",
    "parse_header",
    "read_instance",
    "resample_to_spacing",
    "series_key",
    "sniff",
    "study_key",
]
