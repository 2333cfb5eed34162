"""The batch job driver: studies of a prefix through a pool of Ray actors.

The driver reads the catalog, skips studies that already have a result for the
model, and keeps at most ``cluster.max_in_flight`` studies in flight so memory
stays flat however large the prefix. Each preprocessing actor fetches, decodes
and preprocesses a study, asks an inference actor for probabilities (batched
across studies), and writes the result; the driver only sees small outcomes.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray.exceptions import RayActorError, RayError, RayTaskError

from models import ModelCard
from pipelines import study_key
from ray_cluster._internal.pools import ActorPool, Member
from ray_cluster._internal.ray_runtime import connect_ray, has_gpus
from ray_cluster.actors.inference import InferenceWorker
from ray_cluster.actors.preprocess import PreprocessWorker, StudyTask
from ray_cluster.catalog import Catalog, ensure_catalog
from ray_cluster.config import Settings
from ray_cluster.errors import ClusterError
from ray_cluster.log import log_context
from ray_cluster.processing import code_version, model_results_prefix
from ray_cluster.registry import ModelRegistry
from ray_cluster.storage import (
    ObjectStore,
    S3Url,
    export_credentials,
    resolve_endpoint,
)

__all__ = ["JobProgress", "JobSummary", "new_job_id", "run_job"]

logger = logging.getLogger(__name__)


@dataclass
class JobProgress:
    """Counts reported while a job runs."""

    total: int
    done: int = 0
    failed: int = 0


@dataclass
class JobSummary:
    """What a job did; ``--json`` prints `to_dict`."""

    job_id: str
    url: str
    model: dict[str, str]
    results_prefix: str
    studies_total: int = 0
    studies_ok: int = 0
    studies_failed: int = 0
    studies_already_done: int = 0
    objects_total: int = 0
    objects_rejected: int = 0
    objects_skipped: int = 0
    images: int = 0
    seconds: float = 0.0
    startup_seconds: float = 0.0
    report_prefix: str = ""
    errors: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.perf_counter, repr=False)

    @property
    def exit_code(self) -> int:
        """0 when everything succeeded, 1 when a study or object failed."""
        return 1 if self.studies_failed or self.objects_rejected else 0

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data."""
        data = asdict(self)
        data.pop("started_at")
        data["seconds"] = round(self.seconds, 3)
        data["startup_seconds"] = round(self.startup_seconds, 3)
        data["exit_code"] = self.exit_code
        return data


def new_job_id() -> str:
    """Return a sortable, unique job id."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def _existing_results(
    store: ObjectStore, bucket: str, settings: Settings, card: ModelCard
) -> set[str]:
    prefix = model_results_prefix(settings.inference.results_prefix, card)
    return {
        info.key[len(prefix) :].removesuffix(".json")
        for info in store.list(bucket, prefix)
        if info.key.endswith(".json")
    }


def _export_node_credentials(settings: Settings) -> Settings:
    """Put credentials in this process's environment before a local Ray starts.

    Workers of a local Ray inherit the environment of the node, so this is how
    credentials reach actors on this node; they never travel as arguments.
    """
    export_credentials(settings.storage)
    endpoint = resolve_endpoint(settings.storage)
    storage = settings.storage.model_copy(update={"endpoint": endpoint})
    return settings.model_copy(update={"storage": storage})


#: Studies one preprocessing actor works on at once (its max_concurrency).
_PER_PREPROCESS_ACTOR = 2

#: Retries of a study whose actor died (node lost), on top of ``retries``.
_LOST_ACTOR_RETRIES = 3


@dataclass
class _Pools:
    """The CPU (preprocessing) and inference pools, which scale separately."""

    preprocess: ActorPool
    inference: ActorPool
    gpu: bool

    def all(self) -> tuple[ActorPool, ActorPool]:
        return self.preprocess, self.inference


def _local_fit(settings: Settings, gpu: bool) -> int:
    """Return how many preprocessing actors fit a local Ray beside inference."""
    if settings.cluster.address is not None:
        return 10**6
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    spare = cpus - (0 if gpu else settings.cluster.inference_actors)
    return max(1, int(spare // settings.cluster.cpus_per_preprocess_actor))


def _start_pools(
    settings: Settings, card: ModelCard, bucket: str, n_studies: int, log_level: str
) -> _Pools:
    """Define both pools; actors are created as `_drive` asks for them."""
    safe = settings.without_secrets()
    card_json = card.to_json()
    cluster = settings.cluster
    gpu = cluster.use_gpu == "always" or (cluster.use_gpu == "auto" and has_gpus())
    inference_ask: dict[str, float] = {"GPU": 1.0} if gpu else {"CPU": 1.0}
    inference_cls = ray.remote(InferenceWorker).options(
        num_cpus=0 if gpu else 1,
        num_gpus=1 if gpu else 0,
        max_concurrency=256,
        max_restarts=0,
    )
    custom = {cluster.cpu_resource: 1.0} if cluster.cpu_resource else {}
    pre_cls = ray.remote(PreprocessWorker).options(
        num_cpus=cluster.cpus_per_preprocess_actor,
        resources=custom,
        max_concurrency=_PER_PREPROCESS_ACTOR,
        max_restarts=0,
    )
    pre_most = max(1, min(cluster.preprocess_actors, _local_fit(settings, gpu)))
    pools = _Pools(
        preprocess=ActorPool(
            "cpu",
            make=lambda: pre_cls.remote(safe, card_json, bucket, (), log_level),
            probe=lambda handle: handle.ready.remote(),
            most=pre_most,
            per_actor=_PER_PREPROCESS_ACTOR,
            resources={"CPU": cluster.cpus_per_preprocess_actor, **custom},
            placement_timeout_s=cluster.placement_timeout_s,
        ),
        inference=ActorPool(
            "gpu" if gpu else "inference",
            make=lambda: inference_cls.remote(safe, card_json, log_level),
            probe=lambda handle: handle.info.remote(),
            most=cluster.inference_actors,
            per_actor=10**6,
            resources=inference_ask,
            placement_timeout_s=cluster.placement_timeout_s,
        ),
        gpu=gpu,
    )
    logger.info(
        "pools: up to %d preprocessing actors (%s), up to %d inference (%s), "
        "%d studies",
        pre_most,
        pools.preprocess.resources,
        cluster.inference_actors,
        inference_ask,
        n_studies,
    )
    return pools


def _reject_records(catalog: Catalog) -> list[dict[str, Any]]:
    return [
        {
            "key": h.key,
            "study_key": None,
            "code": h.reason or h.status,
            "message": f"s3://{catalog.url.bucket}/{h.key} is not a readable DICOM "
            f"image ({h.reason or h.status}); remove it from the prefix or fix it",
        }
        for h in catalog.rejected()
    ]


def _write_reports(
    store: ObjectStore,
    bucket: str,
    summary: JobSummary,
    settings: Settings,
    card: ModelCard,
    timings: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
) -> None:
    """Write manifest.json, errors.jsonl, skipped.jsonl and timings.parquet."""
    prefix = summary.report_prefix
    manifest = {
        "job_id": summary.job_id,
        "url": summary.url,
        "model": {"name": card.name, "version": card.version, "sha256": card.sha256},
        "medray_version": code_version(),
        "settings": settings.public_dict(),
        "counts": {
            k: v
            for k, v in summary.to_dict().items()
            if k.startswith(("studies_", "objects_")) or k in ("images", "seconds")
        },
    }
    store.put(
        bucket,
        f"{prefix}manifest.json",
        json.dumps(manifest, indent=2, sort_keys=True).encode(),
        content_type="application/json",
    )
    for name, records in (("errors", summary.errors), ("skipped", skipped)):
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        store.put(
            bucket,
            f"{prefix}{name}.jsonl",
            lines.encode(),
            content_type="application/x-ndjson",
        )
    columns = [
        "job_id",
        "study_key",
        "status",
        "attempt",
        "worker",
        "images",
        "fetch_s",
        "preprocess_s",
        "infer_s",
        "write_s",
        "total_s",
    ]
    table = (
        pa.Table.from_pylist(timings, schema=None)
        if timings
        else pa.table({c: [] for c in columns})
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    store.put(
        bucket,
        f"{prefix}timings.parquet",
        sink.getvalue(),
        content_type="application/vnd.apache.parquet",
    )


def run_job(
    settings: Settings,
    url: str | S3Url,
    model: str,
    *,
    model_version: str | None = None,
    job_id: str | None = None,
    redo: bool = False,
    limit: int | None = None,
    on_progress: Callable[[JobProgress], None] | None = None,
    log_level: str = "WARNING",
) -> JobSummary:
    """Run a model over every study under a prefix and write one result each.

    Args:
        settings: Settings (driver side, with credentials).
        url: ``s3://bucket/prefix`` of the studies.
        model: Model name in the registry.
        model_version: Version; the highest when None.
        job_id: Id of this job; a new one when None.
        redo: Recompute studies that already have a result.
        limit: Process at most this many studies (after skipping done ones).
        on_progress: Called with counts as studies finish.
        log_level: Level of actor log records.

    Returns:
        The job summary. Results and reports are in the bucket.
    """
    started = time.perf_counter()
    target = url if isinstance(url, S3Url) else S3Url.parse(url)
    job_id = job_id or new_job_id()
    store = ObjectStore.from_settings(settings.storage)
    card = ModelRegistry(store, settings).get_card(model, model_version)
    results_prefix = settings.inference.results_prefix.strip("/")
    summary = JobSummary(
        job_id=job_id,
        url=str(target),
        model={"name": card.name, "version": card.version, "sha256": card.sha256},
        results_prefix=f"s3://{target.bucket}/{results_prefix}/{card.name}/{card.sha256[:12]}/",
        report_prefix=f"{results_prefix}/jobs/{job_id}/",
    )
    with log_context(job_id=job_id):
        logger.info("job start: %s with %s %s", target, card.name, card.version)
        catalog = ensure_catalog(store, settings, target)
        studies = catalog.studies()
        done = (
            set() if redo else _existing_results(store, target.bucket, settings, card)
        )
        todo = [
            (uid, hs)
            for uid, hs in sorted(studies.items(), key=lambda kv: study_key(kv[0]))
            if study_key(uid) not in done
        ]
        if limit is not None:
            todo = todo[:limit]
        summary.studies_total = len(studies)
        summary.studies_already_done = len(done & {study_key(u) for u in studies})
        summary.objects_total = len(catalog.headers)
        summary.objects_skipped = len(catalog.skipped())
        skipped = [
            {"key": h.key, "study_key": h.study_key or None, "code": h.reason}
            for h in catalog.skipped()
        ]
        summary.errors.extend(_reject_records(catalog))
        summary.objects_rejected = len(summary.errors)
        timings: list[dict[str, Any]] = []
        if todo:
            _run_studies(
                settings,
                card,
                target.bucket,
                job_id,
                todo,
                summary,
                timings,
                on_progress,
                log_level,
            )
        summary.seconds = time.perf_counter() - started
        _write_reports(store, target.bucket, summary, settings, card, timings, skipped)
        logger.info(
            "job end: %d ok, %d failed, %d already done, %.1f s",
            summary.studies_ok,
            summary.studies_failed,
            summary.studies_already_done,
            summary.seconds,
        )
    return summary


def _run_studies(
    settings: Settings,
    card: ModelCard,
    bucket: str,
    job_id: str,
    todo: list[tuple[str, list[Any]]],
    summary: JobSummary,
    timings: list[dict[str, Any]],
    on_progress: Callable[[JobProgress], None] | None,
    log_level: str,
) -> None:
    started_ray = False
    if not ray.is_initialized() and settings.cluster.address is None:
        settings = _export_node_credentials(settings)
    elif settings.storage.endpoint is None:
        settings = settings.model_copy(
            update={
                "storage": settings.storage.model_copy(
                    update={"endpoint": resolve_endpoint(settings.storage)}
                )
            }
        )
    started_ray = connect_ray(settings)
    pools: _Pools | None = None
    try:
        pools = _start_pools(settings, card, bucket, len(todo), log_level)
        _drive(settings, pools, job_id, todo, summary, timings, on_progress)
    finally:
        if pools is not None:
            for pool in pools.all():
                pool.kill_all()
        if started_ray:
            ray.shutdown()


@dataclass(eq=False)
class _Flight:
    """A study in flight: which actors it uses."""

    task: StudyTask
    preprocess: Member
    inference: Member


def _size_pools(pools: _Pools, pending: int, queued: int) -> None:
    """Ask for the actors the work left needs; release those it does not.

    Args:
        pools: Both pools.
        pending: Studies queued or in flight.
        queued: Studies not yet sent to an actor.
    """
    wanted_pre = -(-pending // _PER_PREPROCESS_ACTOR)
    pools.preprocess.grow(wanted_pre)
    pools.inference.grow(pending)
    pools.preprocess.shrink(keep=wanted_pre if queued else 0)
    pools.inference.shrink(keep=pending if queued else 0)


def _drive(
    settings: Settings,
    pools: _Pools,
    job_id: str,
    todo: list[tuple[str, list[Any]]],
    summary: JobSummary,
    timings: list[dict[str, Any]],
    on_progress: Callable[[JobProgress], None] | None,
) -> None:
    """Send studies to placed actors as they come up; retry lost studies.

    Each study goes to a preprocessing actor together with the inference actor
    it must use, so the driver knows both: when either dies (alone or with its
    node), it is dropped, a new one is asked for, and the study is queued
    again. A study is recorded exactly once, when its outcome arrives or when
    it runs out of retries; its result object is keyed by study and model, so
    a retry of a study whose result was already written overwrites the same
    bytes.
    """
    queue: deque[StudyTask] = deque(
        (job_id, uid, study_key(uid), tuple(h.key for h in hs), 1) for uid, hs in todo
    )
    progress = JobProgress(total=len(todo))
    in_flight: dict[Any, _Flight] = {}
    lost: dict[str, int] = {}
    while queue or in_flight:
        pending = len(queue) + len(in_flight)
        _size_pools(pools, pending, len(queue))
        for pool in pools.all():
            pool.poll(pending)
        while queue and len(in_flight) < settings.cluster.max_in_flight:
            pre, inf = pools.preprocess.pick(), pools.inference.pick()
            if pre is None or inf is None:
                break
            task = queue.popleft()
            if not summary.startup_seconds:
                summary.startup_seconds = time.perf_counter() - summary.started_at
            pre.busy += 1
            inf.busy += 1
            ref = pre.handle.process.remote(task, inf.handle)
            in_flight[ref] = _Flight(task, pre, inf)
        waiting = list(in_flight) + pools.preprocess.probes() + pools.inference.probes()
        ready, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
        if ready:
            ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
        for ref in ready:
            flight = in_flight.pop(ref, None)
            if flight is None:
                continue  # an actor was placed: picked up by poll
            flight.preprocess.busy -= 1
            flight.inference.busy -= 1
            outcome = _outcome(settings, pools, flight, ref, queue, lost)
            if outcome is None:
                continue
            _record(summary, timings, job_id, outcome, progress)
            if on_progress is not None:
                on_progress(progress)


def _outcome(
    settings: Settings,
    pools: _Pools,
    flight: _Flight,
    ref: Any,
    queue: deque[StudyTask],
    lost: dict[str, int],
) -> dict[str, Any] | None:
    """Return a finished study's outcome, or None when it was queued again."""
    task = flight.task
    try:
        outcome: dict[str, Any] = ray.get(ref)
        return outcome
    except (RayError, ClusterError) as exc:
        dead = _replace_actor(pools, flight, exc)
        key = task[2]
        if dead:
            lost[key] = lost.get(key, 0) + 1
        errors = task[4] - lost.get(key, 0)
        if (dead and lost[key] <= _LOST_ACTOR_RETRIES) or (
            not dead and errors <= settings.preprocessing.retries
        ):
            logger.warning(
                "study %s attempt %d failed (%s); retrying",
                key,
                task[4],
                "its actor died" if dead else type(exc).__name__,
            )
            queue.append((*task[:4], task[4] + 1))
            return None
        return _quarantine(task, exc)


def _replace_actor(pools: _Pools, flight: _Flight, exc: BaseException) -> bool:
    """Drop the actor whose death failed a study; return whether one died.

    A `RayActorError` carried as the cause of a `RayTaskError` was raised
    inside the preprocessing actor by its call to the inference actor (Ray
    makes such errors instances of both classes, so this is checked first);
    one raised by the study's own call means the preprocessing actor died.
    """
    if isinstance(exc, RayTaskError):
        if not isinstance(exc.cause, RayActorError):
            return False
        if flight.inference in pools.inference.members:
            logger.warning(
                "inference actor %s died; asking for a new one", flight.inference.name
            )
        pools.inference.replace(flight.inference)
        return True
    if isinstance(exc, RayActorError):
        if flight.preprocess in pools.preprocess.members:
            logger.warning(
                "preprocessing actor %s died; asking for a new one",
                flight.preprocess.name,
            )
        pools.preprocess.replace(flight.preprocess)
        return True
    return False


def _quarantine(task: StudyTask, exc: BaseException) -> dict[str, Any]:
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause else exc
    return {
        "study_key": task[2],
        "status": "failed",
        "error": {
            "code": "quarantined",
            "message": f"study {task[2]} failed {task[4]} times "
            f"({type(cause).__name__}); it was set aside, run the job again to retry",
            "key": None,
        },
        "images": 0,
        "attempt": task[4],
        "worker": None,
        "timings": {},
    }


def _record(
    summary: JobSummary,
    timings: list[dict[str, Any]],
    job_id: str,
    outcome: dict[str, Any],
    progress: JobProgress,
) -> None:
    progress.done += 1
    summary.images += int(outcome.get("images", 0))
    if outcome["status"] == "ok":
        summary.studies_ok += 1
    else:
        progress.failed += 1
        summary.studies_failed += 1
        error = dict(outcome["error"] or {})
        error["study_key"] = outcome["study_key"]
        summary.errors.append(error)
    stage = outcome.get("timings", {})
    timings.append(
        {
            "job_id": job_id,
            "study_key": outcome["study_key"],
            "status": outcome["status"],
            "attempt": outcome.get("attempt", 1),
            "worker": outcome.get("worker"),
            "images": outcome.get("images", 0),
            **{
                k: float(stage.get(k, 0.0))
                for k in ("fetch_s", "preprocess_s", "infer_s", "write_s")
            },
            "total_s": float(sum(stage.values())) if stage else 0.0,
        }
    )
