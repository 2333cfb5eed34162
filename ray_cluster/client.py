"""A small client of medray's HTTP service.

    from ray_cluster.client import MedrayClient
    with MedrayClient("http://127.0.0.1:8000", api_key=key) as client:
        result = client.predict(["a.dcm", "b.dcm"], model="reference")

One file goes as ``application/dicom``, several as one
``multipart/related; type="application/dicom"`` body (one study per request).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from ray_cluster.errors import ClusterError

__all__ = [
    "ENV_API_KEY",
    "ClientError",
    "MedrayClient",
    "encode_instances",
    "read_api_key",
]

logger = logging.getLogger(__name__)

ENV_API_KEY = "MEDRAY_API_KEY"


class ClientError(ClusterError):
    """The service refused a request or could not be reached.

    Attributes:
        status: HTTP status (0 when no answer came).
        code: The service's error code, e.g. ``overloaded``.
    """

    def __init__(
        self, message: str, *, key: str | None = None, status: int = 0, code: str = ""
    ) -> None:
        super().__init__(message, key=key)
        self.status = status
        self.code = code


def read_api_key(
    key_file: Path | None = None, env: dict[str, str] | None = None
) -> str | None:
    """Return the API key from a file (first non-comment line) or ``MEDRAY_API_KEY``."""
    if key_file is not None:
        for line in Path(key_file).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.strip().startswith("#"):
                return line.strip()
        return None
    value = (os.environ if env is None else env).get(ENV_API_KEY, "").strip()
    return value or None


def encode_instances(instances: Sequence[bytes]) -> tuple[bytes, str]:
    """Return ``(body, content type)`` for one or several DICOM instances."""
    if not instances:
        raise ValueError("give at least one DICOM instance")
    if len(instances) == 1:
        return instances[0], "application/dicom"
    boundary = secrets.token_hex(16)
    pieces: list[bytes] = []
    for data in instances:
        pieces.append(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii")
        )
        pieces.append(data)
        pieces.append(b"\r\n")
    pieces.append(f"--{boundary}--\r\n".encode("ascii"))
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(pieces), content_type


class MedrayClient:
    """Talk to a running ``medray serve``.

    Args:
        url: Base URL, e.g. ``http://127.0.0.1:8000``.
        api_key: The API key (sent as ``Authorization: Bearer``).
        timeout_s: Seconds to wait for an answer.
        transport: An httpx transport (tests).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            trust_env=False,
        )

    def __enter__(self) -> MedrayClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(
                f"{method} {path} failed: {type(exc).__name__}; is `medray serve` "
                f"running at {self._http.base_url}?"
            ) from None
        if response.is_success:
            return response.json()
        code, message = "", response.text[:300]
        try:
            error = response.json().get("error") or {}
            code, message = (
                str(error.get("code", "")),
                str(error.get("message", message)),
            )
        except ValueError:
            pass
        raise ClientError(
            f"{method} {path}: {response.status_code} {message}",
            status=response.status_code,
            code=code,
        )

    def predict(
        self, instances: Iterable[Path | str | bytes], model: str
    ) -> dict[str, Any]:
        """Send one study's instances and return its result.

        Args:
            instances: Paths of DICOM files, or their bytes.
            model: Name of a served model.

        Raises:
            ClientError: The service refused the request or is unreachable.
        """
        blobs = [i if isinstance(i, bytes) else Path(i).read_bytes() for i in instances]
        body, content_type = encode_instances(blobs)
        result: dict[str, Any] = self._send(
            "POST",
            f"/v1/models/{model}/predict",
            content=body,
            headers={"Content-Type": content_type},
        )
        return result

    def models(self) -> list[dict[str, Any]]:
        """Return the cards of the served models."""
        data: dict[str, Any] = self._send("GET", "/v1/models")
        return list(data["models"])

    def submit_study(
        self, model: str, url: str, study_uid: str | None = None
    ) -> dict[str, Any]:
        """Start a job over a study (or every study) under ``s3://bucket/prefix``."""
        body = {"model": model, "url": url, "study_uid": study_uid}
        status: dict[str, Any] = self._send("POST", "/v1/studies", json=body)
        return status

    def job(self, job_id: str) -> dict[str, Any]:
        """Return a job's status, progress and, once done, its results."""
        status: dict[str, Any] = self._send("GET", f"/v1/jobs/{job_id}")
        return status

    def wait(
        self, job_id: str, timeout_s: float = 600.0, poll_s: float = 0.5
    ) -> dict[str, Any]:
        """Poll a job until it is done or failed.

        Raises:
            ClientError: The job is still running after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.job(job_id)
            if status["status"] in ("done", "failed"):
                return status
            if time.monotonic() > deadline:
                raise ClientError(
                    f"job {job_id} still {status['status']} after {timeout_s:g} s"
                )
            time.sleep(poll_s)

    def ready(self) -> bool:
        """Return whether every model deployment answers."""
        try:
            response = self._http.get("/readyz")
        except httpx.HTTPError:
            return False
        return response.status_code == 200
