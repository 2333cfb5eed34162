"""medray's cluster layer: object storage, Ray jobs, Serve, CLI and Python API."""

from __future__ import annotations

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
