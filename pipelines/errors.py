"""Exceptions raised by the preprocessing pipeline.

The tree::

    PipelineError
     ├── NeedMoreBytes                a header prefix was too short; fetch more
     └── InvalidStudyError(ValueError) the object or study cannot be used
          ├── MissingTagError          a required attribute is absent
          ├── UndecodableError         no decoder, or the decoder failed
          ├── TruncatedError           the object ends before its data does
          ├── DecodeBudgetError        the decoded size exceeds the budget
          └── NotDicomError            the object is not a DICOM data set

Every error carries ``key`` (the object key, never patient data) and ``code``
(a stable reason code for reports and metrics). Errors cross process
boundaries, so each takes its message first and its context as defaulted
keyword arguments, and pickles with that context intact.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DecodeBudgetError",
    "InvalidStudyError",
    "MissingTagError",
    "NeedMoreBytes",
    "NotDicomError",
    "PipelineError",
    "TruncatedError",
    "UndecodableError",
]


class PipelineError(Exception):
    """Base class of every error raised by :mod:`pipelines`.

    Args:
        message: What went wrong and what to do next; names the object.
        key: Object key (S3 key or local path) the error is about.
        code: Stable reason code, e.g. ``"pixel_data_truncated"``.
    """

    default_code = "pipeline_error"

    def __init__(self, message: str = "", *, key: str = "", code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.code = code or self.default_code

    def _context(self) -> dict[str, Any]:
        return {"key": self.key, "code": self.code}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self._context()))


def _rebuild(
    cls: type[PipelineError], message: str, context: dict[str, Any]
) -> PipelineError:
    return cls(message, **context)


class NeedMoreBytes(PipelineError):
    """The header prefix ended before Pixel Data and the object is longer.

    Args:
        message: Human-readable explanation.
        wanted: Number of leading bytes to fetch for the next attempt.
        key: Object key.
        code: Reason code.
    """

    default_code = "need_more_bytes"

    def __init__(
        self, message: str = "", *, wanted: int = 0, key: str = "", code: str = ""
    ) -> None:
        super().__init__(message, key=key, code=code)
        self.wanted = wanted

    def _context(self) -> dict[str, Any]:
        return {**super()._context(), "wanted": self.wanted}


class InvalidStudyError(PipelineError, ValueError):
    """The object (or the study it belongs to) cannot be turned into arrays."""

    default_code = "invalid_study"


class MissingTagError(InvalidStudyError):
    """A required attribute, such as ``(0028,0010) Rows``, is absent."""

    default_code = "missing_tag"


class UndecodableError(InvalidStudyError):
    """The pixel data cannot be decoded (unsupported syntax, decoder error)."""

    default_code = "undecodable"


class TruncatedError(InvalidStudyError):
    """The object ends before its pixel data (or its header) does."""

    default_code = "truncated"


class DecodeBudgetError(InvalidStudyError):
    """Decoding would need more memory than :class:`DecodeLimits` allows."""

    default_code = "decode_budget_exceeded"


class NotDicomError(InvalidStudyError):
    """The object is not a DICOM data set (text, JPEG, empty, ...)."""

    default_code = "not_dicom"
