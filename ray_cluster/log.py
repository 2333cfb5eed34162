"""Logging set-up for the CLI and for actors, and the context filter.

Library modules only create ``logging.getLogger(__name__)``; handlers are added
here, by the CLI entry point and at actor start. A filter stamps every record
with ``job_id``, ``shard_id``, ``worker`` and ``study_key`` from a context
variable, so worker records say which job and study they belong to.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from typing import Any, Literal

__all__ = ["ContextFilter", "RedactValuesFilter", "configure_logging", "log_context"]

_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "medray_log_context", default=None
)
_FIELDS = ("job_id", "shard_id", "worker", "study_key")


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add fields (job_id, shard_id, worker, study_key) to records in a block."""
    current = dict(_CONTEXT.get() or {})
    current.update({k: v for k, v in fields.items() if v is not None})
    token = _CONTEXT.set(current)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Stamp the context fields onto every record ("-" when unset)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get() or {}
        for name in _FIELDS:
            if not hasattr(record, name):
                setattr(record, name, context.get(name, "-"))
        return True


_QUOTED = re.compile(r"(['\"]).*?\1")


class RedactValuesFilter(logging.Filter):
    """Replace quoted values in third-party warnings with ``'…'``.

    pydicom quotes the offending element value in its warnings (an invalid IS,
    an undecodable name); such a value may be patient data, so it never reaches
    a handler. The tag and the kind of problem stay readable.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = _QUOTED.sub("'…'", message)
        record.args = None
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": os.getpid(),
        }
        for name in _FIELDS:
            value = getattr(record, name, "-")
            if value != "-":
                data[name] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, sort_keys=True)


_TEXT = (
    "%(asctime)s %(levelname)s %(name)s [job=%(job_id)s study=%(study_key)s] "
    "%(message)s"
)


def configure_logging(
    level: str | int = "WARNING", fmt: Literal["text", "json"] = "text"
) -> None:
    """Send medray's records to stderr at ``level`` in text or JSON.

    Args:
        level: Level name or number for the medray packages.
        fmt: ``text`` for people, ``json`` for log aggregation.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        _JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT)
    )
    for name in ("ray_cluster", "pipelines", "models"):
        package_logger = logging.getLogger(name)
        for old in list(package_logger.handlers):
            if not isinstance(old, logging.NullHandler):
                package_logger.removeHandler(old)
        package_logger.addHandler(handler)
        package_logger.setLevel(level if isinstance(level, int) else level.upper())
        package_logger.propagate = False
    warnings_logger = logging.getLogger("py.warnings")
    for old in list(warnings_logger.handlers):
        warnings_logger.removeHandler(old)
    redacting = logging.StreamHandler(sys.stderr)
    redacting.addFilter(RedactValuesFilter())
    redacting.addFilter(ContextFilter())
    redacting.setFormatter(handler.formatter)
    warnings_logger.addHandler(redacting)
    warnings_logger.propagate = False
    logging.captureWarnings(True)
