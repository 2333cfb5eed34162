"""Request bodies of the predict route: size limit, content type, DICOM parts.

A body is one DICOM instance (``application/dicom``) or several parts of a
``multipart/related`` (DICOMweb STOW style) or ``multipart/form-data`` body. The
size is checked twice: the declared ``Content-Length`` before reading, and the
bytes actually received while streaming (a client may lie or send chunks).
Parts are named ``part-<n>`` (0-based) in results and messages: client file
names may carry patient data and are never used.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import (
    MultipartParser,
    MultipartState,
    parse_options_header,
)
from starlette.requests import ClientDisconnect

from pipelines import StudyImages, identify_instance

if TYPE_CHECKING:  # a typing-only name of python-multipart
    from python_multipart.multipart import MultipartCallbacks

__all__ = [
    "DICOM_TYPES",
    "RequestRejected",
    "body_kind",
    "read_limited",
    "split_parts",
    "vet_upload",
]

logger = logging.getLogger(__name__)

DICOM_TYPES = ("application/dicom", "application/octet-stream")
MULTIPART_TYPES = ("multipart/related", "multipart/form-data")


@dataclass
class RequestRejected(Exception):
    """A request the service refuses, with its HTTP status and a clear message."""

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return self.message


def body_kind(content_type: str | None) -> tuple[str, bytes]:
    """Classify a request's content type.

    Returns:
        ``("dicom", b"")`` or ``("multipart", boundary)``.

    Raises:
        RequestRejected: 415 for any other content type or a missing boundary.
    """
    mime, params = parse_options_header(content_type or "")
    kind = mime.decode("latin-1").lower()
    if kind in DICOM_TYPES:
        return "dicom", b""
    if kind in MULTIPART_TYPES:
        boundary = params.get(b"boundary", b"")
        if not boundary:
            raise RequestRejected(
                400,
                "no_boundary",
                f"the {kind} content type has no boundary parameter; add "
                "'; boundary=...' naming the separator of the parts",
            )
        declared = params.get(b"type", b"").decode("latin-1").lower()
        if declared and declared not in DICOM_TYPES:
            raise RequestRejected(
                415,
                "unsupported_media_type",
                f"the {kind} body declares parts of type {declared!r}; send "
                "type=application/dicom",
            )
        return "multipart", boundary
    raise RequestRejected(
        415,
        "unsupported_media_type",
        f"content type {kind or 'none'!r} is not accepted; send one instance as "
        "application/dicom or several as multipart/related; type=application/dicom",
    )


#: What a 413 on an upload advises.
UPLOAD_ADVICE = (
    "(serve.max_upload_mb); send large studies to the bucket and use POST /v1/studies"
)


async def read_limited(
    chunks: AsyncIterator[bytes],
    declared: str | None,
    limit: int,
    advice: str = UPLOAD_ADVICE,
) -> bytes:
    """Read a body of at most ``limit`` bytes.

    Args:
        chunks: The body as it streams in.
        declared: The ``Content-Length`` header, if any.
        limit: Largest accepted body in bytes.
        advice: What the 413 message says after the limit.

    Raises:
        RequestRejected: 413 when the declared or received size exceeds the limit,
            400 when ``Content-Length`` is not a number or the client went away
            before the body was complete.
    """
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestRejected(
                400, "bad_content_length", "Content-Length is not a number"
            ) from None
        if size > limit:
            raise _too_large(limit, advice)
    received = bytearray()
    try:
        async for chunk in chunks:
            received += chunk
            if len(received) > limit:
                raise _too_large(limit, advice)
    except ClientDisconnect:
        raise RequestRejected(
            400,
            "client_disconnected",
            "the client closed the connection before the body was complete",
        ) from None
    return bytes(received)


def _too_large(limit: int, advice: str) -> RequestRejected:
    size = f"{limit / 2**20:.1f} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"
    return RequestRejected(
        413, "body_too_large", f"the body is larger than {size} {advice}"
    )


class _PartCollector:
    """Callbacks of the multipart parser that keep each part's bytes."""

    def __init__(self) -> None:
        self.parts: list[tuple[dict[str, str], bytes]] = []
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._data = bytearray()

    def on_part_begin(self) -> None:
        self._headers, self._data = {}, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._field, self._value = bytearray(), bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]

    def on_part_end(self) -> None:
        self.parts.append((self._headers, bytes(self._data)))


def split_parts(body: bytes, kind: str, boundary: bytes) -> list[bytes]:
    """Return the instances of a body.

    Multipart parts whose content type is not DICOM (a form field, say) are
    refused rather than silently dropped.

    Raises:
        RequestRejected: 400 for an empty or malformed body, 415 for a part of
            another content type.
    """
    if kind == "dicom":
        if not body:
            raise RequestRejected(400, "empty_body", "the body is empty")
        return [body]
    collector = _PartCollector()
    parser = MultipartParser(boundary, callbacks=_callbacks(collector))
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise RequestRejected(
            400, "bad_multipart", f"the multipart body cannot be parsed: {exc}"
        ) from None
    if parser.state != MultipartState.END:
        # The parser keeps a part it has not seen the end of to itself: without
        # this check a body cut short would lose its last instance unnoticed.
        raise RequestRejected(
            400,
            "bad_multipart",
            f"the multipart body ends before its closing boundary "
            f"(--{boundary.decode('latin-1')}--) after {len(collector.parts)} "
            "complete part(s): it was cut short; send the whole body again",
        )
    if not collector.parts:
        raise RequestRejected(400, "empty_body", "the multipart body has no parts")
    instances = []
    for index, (headers, data) in enumerate(collector.parts):
        mime, _ = parse_options_header(headers.get("content-type", ""))
        part_type = mime.decode("latin-1").lower()
        if not part_type and _is_form_field(headers):
            raise RequestRejected(
                415,
                "unsupported_media_type",
                f"part-{index} is a form field, not a file; send each instance as a "
                "file part (curl -F 'file=@image.dcm;type=application/dicom')",
            )
        if part_type and part_type not in DICOM_TYPES:
            raise RequestRejected(
                415,
                "unsupported_media_type",
                f"part-{index} has content type {part_type!r}; every part must be "
                "application/dicom (or application/octet-stream)",
            )
        if not data:
            raise RequestRejected(400, "empty_part", f"part-{index} is empty")
        instances.append(data)
    return instances


def _is_form_field(headers: dict[str, str]) -> bool:
    """A ``form-data`` part without a file name: a field, not an uploaded file."""
    disposition, params = parse_options_header(headers.get("content-disposition", ""))
    return disposition.lower() == b"form-data" and b"filename" not in params


def _callbacks(collector: _PartCollector) -> MultipartCallbacks:
    return {
        "on_part_begin": collector.on_part_begin,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
        "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end,
    }


def vet_upload(
    objects: Sequence[tuple[str, bytes]], images: StudyImages
) -> tuple[str, StudyImages]:
    """Apply the catalog's rules to uploaded instances, after one full read.

    ``images`` is `pipelines.assemble_study` of ``objects``. The instances that
    became images need no other parse. Those that did not are parsed the way
    the batch job's catalog parses them (`pipelines.identify_instance`):
    instances without pixel data (a DICOMDIR, a report) are left out, as the
    catalog leaves them out; image instances that failed to decode stay in the
    study's errors, as in the batch job.

    Returns:
        ``(study uid, images without the left-out instances)``.

    Raises:
        RequestRejected: 400 when a part is not DICOM or unreadable, when no part
            has pixel data, or when the parts belong to several studies.
    """
    failed = {i.key for i in images.skipped} | {i.key for i in images.errors}
    studies = set(images.study_uids)
    left_out: set[str] = set()
    has_image = False
    for key, data in objects:
        if key not in failed:
            has_image = True
            continue
        found = identify_instance(data, key=key)
        if found.status in ("not_dicom", "unreadable"):
            raise RequestRejected(
                400,
                "not_dicom",
                f"{key} is not a readable DICOM instance "
                f"({found.reason or found.status}); send DICOM Part 10 files",
            )
        if found.status != "image":
            left_out.add(key)
            continue
        has_image = True
        if found.study_uid:
            studies.add(found.study_uid)
    if not has_image:
        raise RequestRejected(
            400,
            "no_image",
            "no instance in the body has pixel data; send image instances",
        )
    if not studies:
        raise RequestRejected(
            400,
            "no_study_uid",
            "no instance carries a StudyInstanceUID (0020,000D); send instances "
            "of one identified study",
        )
    if len(studies) != 1:
        raise RequestRejected(
            400,
            "several_studies",
            f"the instances belong to {len(studies)} studies; send exactly one "
            "study per request (StudyInstanceUID must be set and equal)",
        )
    images.skipped = [i for i in images.skipped if i.key not in left_out]
    images.errors = [i for i in images.errors if i.key not in left_out]
    return studies.pop(), images
