"""Study jobs: a reference to studies in the bucket in, results out, later.

``POST /v1/studies`` carries a reference (``s3://bucket/prefix`` and optionally a
StudyInstanceUID of that prefix's catalog), never pixel data. One replica keeps
the jobs in memory: it reads the catalog (building or refreshing it as the batch
job does), then asks the model deployment to fetch, answer and write each study,
a few at a time. Jobs are lost when the replica restarts; results written to the
bucket stay.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ray.serve.exceptions import BackPressureError

from pipelines import study_key
from ray_cluster.catalog import ensure_catalog
from ray_cluster.config import Settings
from ray_cluster.errors import ClusterError
from ray_cluster.log import configure_logging, log_context
from ray_cluster.serve._loopback import bind_replica_grpc_to_loopback
from ray_cluster.storage import ObjectStore, S3Url

__all__ = ["MAX_STUDIES_PER_JOB", "StudyJobs"]

logger = logging.getLogger(__name__)

#: A prefix with more studies is a batch job (`medray run`), not an online one.
MAX_STUDIES_PER_JOB = 256
#: Finished jobs kept for ``GET /v1/jobs/{id}``; the oldest are forgotten first.
MAX_JOBS_KEPT = 1000
STUDIES_IN_FLIGHT = 4
RETRY_WAIT_S = 0.5


@dataclass
class _Job:
    job_id: str
    model: str
    url: str
    study_uid: str | None
    status: str = "queued"
    total: int = 0
    done: int = 0
    failed: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        one = self.results[0] if len(self.results) == 1 and self.total == 1 else None
        return {
            "job_id": self.job_id,
            "status": self.status,
            "model": self.model,
            "url": self.url,
            "study_uid": self.study_uid,
            "progress": {"total": self.total, "done": self.done, "failed": self.failed},
            "result": one,
            "results": self.results if self.status in ("done", "failed") else [],
            "error": self.error,
            "created": round(self.created, 3),
            "finished": None if self.finished is None else round(self.finished, 3),
        }


class StudyJobs:
    """Run references to studies through the model deployments.

    Args:
        settings: Settings without secrets; credentials come from this node.
        models: Model name -> handle of its deployment.
        log_level: Level of this replica's medray log records.
    """

    def __init__(
        self, settings: Settings, models: dict[str, Any], log_level: str
    ) -> None:
        configure_logging(log_level, "text")
        bind_replica_grpc_to_loopback()
        self.settings = settings
        self.models = models
        self.store = ObjectStore.from_settings(settings.storage)
        self.jobs: OrderedDict[str, _Job] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(
        self, model: str, url: str, study_uid: str | None
    ) -> dict[str, Any]:
        """Start a job and return its first status.

        Raises:
            KeyError: ``model`` is not served here.
            ConfigError: ``url`` is not ``s3://bucket/prefix``.
        """
        if model not in self.models:
            raise KeyError(model)
        target = S3Url.parse(url)
        job_id = (
            time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)
        )
        job = _Job(job_id=job_id, model=model, url=str(target), study_uid=study_uid)
        self.jobs[job_id] = job
        while len(self.jobs) > MAX_JOBS_KEPT:
            self.jobs.popitem(last=False)
        task = asyncio.get_running_loop().create_task(self._run(job, target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job.to_dict()

    def status(self, job_id: str) -> dict[str, Any] | None:
        """Return a job's status, or None for an unknown (or forgotten) job."""
        job = self.jobs.get(job_id)
        return None if job is None else job.to_dict()

    async def _run(self, job: _Job, target: S3Url) -> None:
        with log_context(job_id=job.job_id):
            job.status = "running"
            try:
                await self._run_studies(job, target)
            except ClusterError as exc:
                # Foreseen (no such bucket, say): the job's error says it all.
                job.status = "failed"
                job.error = _error_of(exc)
                logger.warning("job failed: %s", job.error["code"])
            except Exception as exc:
                job.status = "failed"
                job.error = _error_of(exc)
                logger.exception("job failed: %s", job.error["code"])
            else:
                job.status = "failed" if job.failed or job.error else "done"
            job.finished = time.time()
            logger.info("job %s: %d done, %d failed", job.status, job.done, job.failed)

    async def _run_studies(self, job: _Job, target: S3Url) -> None:
        catalog = await asyncio.to_thread(
            ensure_catalog, self.store, self.settings, target
        )
        studies = catalog.studies()
        if job.study_uid is not None:
            wanted = studies.get(job.study_uid)
            if wanted is None:
                job.error = {
                    "code": "study_not_found",
                    "message": f"study {study_key(job.study_uid)} has no image "
                    f"instances under {target}; check the UID and the prefix",
                }
                return
            studies = {job.study_uid: wanted}
        if not studies:
            job.error = {
                "code": "no_studies",
                "message": f"no DICOM study with pixel data under {target}",
            }
            return
        if len(studies) > MAX_STUDIES_PER_JOB:
            job.error = {
                "code": "too_many_studies",
                "message": f"{target} holds {len(studies)} studies, more than the "
                f"{MAX_STUDIES_PER_JOB} an online job takes; use `medray run`",
            }
            return
        job.total = len(studies)
        gate = asyncio.Semaphore(STUDIES_IN_FLIGHT)
        handle = self.models[job.model]

        async def one(uid: str, keys: list[str]) -> dict[str, Any]:
            async with gate:
                try:
                    result = await _call_with_retry(
                        handle, target.bucket, uid, keys, job.job_id
                    )
                except Exception as exc:
                    logger.warning(
                        "study %s failed (%s)", study_key(uid), type(exc).__name__
                    )
                    result = {
                        "study_key": study_key(uid),
                        "study_uid": uid,
                        "error": _error_of(exc),
                    }
            job.done += 1
            if result.get("error") is not None:
                job.failed += 1
            return result

        ordered = sorted(studies.items(), key=lambda kv: study_key(kv[0]))
        job.results = list(
            await asyncio.gather(
                *(one(uid, [h.key for h in hs]) for uid, hs in ordered)
            )
        )


async def _call_with_retry(
    handle: Any, bucket: str, uid: str, keys: list[str], job_id: str
) -> dict[str, Any]:
    while True:
        try:
            result: dict[str, Any] = await handle.predict_stored.remote(
                bucket, uid, keys, job_id
            )
            return result
        except BackPressureError:
            await asyncio.sleep(RETRY_WAIT_S)


def _error_code(exc: ClusterError) -> str:
    """``ObjectNotFoundError`` -> ``object_not_found``: codes are snake case."""
    name = type(exc).__name__.removesuffix("Error") or "cluster"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _error_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ClusterError):
        return {"code": _error_code(exc), "message": exc.message, "key": exc.key}
    return {
        "code": "internal_error",
        "message": f"the job stopped on {type(exc).__name__}; see the service log",
        "key": None,
    }
