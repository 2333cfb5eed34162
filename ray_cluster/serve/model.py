"""The model deployment: one model, dynamic batching across requests.

Each replica loads one model version (weights fetched from the registry on its
node and checked against the card's sha256) and answers studies with the same
`prepare_study` / `finish_study` path as the batch job, so both give the same
result. Images of concurrent requests share forward passes (`Batcher`): a batch
holds at most ``serve.batch_max_size`` images; it is formed when the model is
free, from the images that came while the previous forward ran, and only a
model found idle waits ``serve.batch_wait_timeout_s`` for company. With
``serve.batcher: ray`` Ray Serve's ``@serve.batch`` groups them instead
(`ServeBatcher`), for comparison.

`ModelServer.predict` also says where the time went (`Answer.stages_ms`), for the
ingress's optional ``Server-Timing`` header.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from ray import serve

from models import ModelCard, load_model, predict_batch, resolve_device
from pipelines import DecodeLimits, assemble_study
from ray_cluster.config import Settings
from ray_cluster.log import configure_logging, log_context
from ray_cluster.processing import (
    PreparedStudy,
    dumps_result,
    finish_study,
    prepare_images,
    prepare_study,
    result_key,
)
from ray_cluster.registry import ModelRegistry
from ray_cluster.serve._loopback import bind_replica_grpc_to_loopback
from ray_cluster.serve.uploads import RequestRejected, vet_upload
from ray_cluster.storage import ObjectStore

__all__ = ["Answer", "Batcher", "ModelServer", "ServeBatcher", "images_in"]

logger = logging.getLogger(__name__)

#: One forward's slice of probabilities, when the batch started, forward seconds.
_Forwarded = tuple[np.ndarray, float, float]


@dataclass(frozen=True)
class Answer:
    """The result of a study sent with a request, and where its time went.

    ``stages_ms`` holds ``prepare`` (decode and preprocessing), ``batch_wait``
    (until its batch started), ``forward`` (the batch's forward pass), ``finish``
    (the result document) and ``model`` (all of these), in milliseconds. The
    slowest chunk counts when a study needs several forwards.
    """

    result: dict[str, Any]
    stages_ms: dict[str, float] = field(default_factory=dict)
    #: ``(HTTP status, code, message)`` when an upload breaks the catalog's
    #: rules (`vet_upload`); ``result`` is then empty.
    rejection: tuple[int, str, str] | None = None


def images_in(chunks: Sequence[np.ndarray]) -> int:
    """Return how many images a list of ``(N, C, H, W)`` chunks holds."""
    return sum(len(c) for c in chunks)


class ImageBatcher(Protocol):
    """What `ModelServer` needs of a batcher: chunks in, their forward out."""

    images_done: int
    batches_done: int

    async def submit(self, chunk: np.ndarray) -> _Forwarded:
        """Return the chunk's probabilities, when its batch started and its seconds."""
        ...


def _forwarded_slices(
    chunks: Sequence[np.ndarray], probs: np.ndarray, started: float, seconds: float
) -> list[_Forwarded]:
    """Cut the probabilities of a stacked batch back into its chunks."""
    out: list[_Forwarded] = []
    start = 0
    for chunk in chunks:
        out.append((probs[start : start + len(chunk)], started, seconds))
        start += len(chunk)
    return out


class Batcher:
    """Run forwards over the images of concurrent callers, one forward at a time.

    Ray's ``@serve.batch`` forms the next batch as soon as the previous one
    starts, so under steady load it queues many small batches while requests
    wait behind all of them. Here the next batch is taken when the model is
    free: everything that came during the previous forward, up to
    ``max_images``. A model found idle waits ``wait_s`` to gather more.

    Args:
        forward: Probabilities ``(N, K)`` of a stack of inputs ``(N, C, H, W)``.
        max_images: Most images in one forward; each submitted chunk holds at
            most this many.
        wait_s: Wait of a batch that starts on an idle model.
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], Awaitable[np.ndarray]],
        max_images: int,
        wait_s: float,
    ) -> None:
        self.forward = forward
        self.max_images = max_images
        self.wait_s = wait_s
        self.images_done = 0
        self.batches_done = 0
        self._pending: list[tuple[np.ndarray, asyncio.Future[_Forwarded]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, chunk: np.ndarray) -> _Forwarded:
        """Return the chunk's probabilities, when its batch started and its seconds."""
        if len(chunk) > self.max_images:
            raise ValueError(f"a chunk of {len(chunk)} images exceeds the batch size")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Forwarded] = loop.create_future()
        self._pending.append((chunk, future))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        if images_in([c for c, _ in self._pending]) < self.max_images:
            await asyncio.sleep(self.wait_s)
        while self._pending:
            await self._run_one(self._take())

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future[_Forwarded]]]:
        taken: list[tuple[np.ndarray, asyncio.Future[_Forwarded]]] = []
        size = 0
        while self._pending:
            chunk, future = self._pending[0]
            if taken and size + len(chunk) > self.max_images:
                break
            self._pending.pop(0)
            if not future.done():  # a cancelled caller
                taken.append((chunk, future))
                size += len(chunk)
        return taken

    async def _run_one(
        self, batch: list[tuple[np.ndarray, asyncio.Future[_Forwarded]]]
    ) -> None:
        if not batch:
            return
        chunks = [c for c, _ in batch]
        started = time.perf_counter()
        try:
            stacked = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
            probs = await self.forward(stacked)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        seconds = time.perf_counter() - started
        self.images_done += len(stacked)
        self.batches_done += 1
        slices = _forwarded_slices(chunks, probs, started, seconds)
        for (_, future), forwarded in zip(batch, slices, strict=True):
            if not future.done():
                future.set_result(forwarded)


class ServeBatcher:
    """Ray Serve's ``@serve.batch`` over chunks of images (``serve.batcher: ray``).

    A batch holds at most ``max_images`` images (``batch_size_fn`` counts
    images, not chunks) and one forward runs at a time. Ray forms the next batch
    as soon as the previous one starts, from what is queued then: under steady
    load batches are smaller than `Batcher`'s. Only usable inside a Serve
    replica, where Ray creates the batch queue.

    Args:
        forward: Probabilities ``(N, K)`` of a stack of inputs ``(N, C, H, W)``.
        max_images: Most images in one forward; each submitted chunk holds at
            most this many.
        wait_s: Ray's ``batch_wait_timeout_s``: how long a batch waits to fill.
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], Awaitable[np.ndarray]],
        max_images: int,
        wait_s: float,
    ) -> None:
        self.forward = forward
        self.images_done = 0
        self.batches_done = 0
        # Ray's typing of a decorated method leaves out its setters.
        handler: Any = self._forward_batch
        handler.set_max_batch_size(max_images)
        handler.set_batch_wait_timeout_s(wait_s)

    async def submit(self, chunk: np.ndarray) -> _Forwarded:
        """Return the chunk's probabilities, when its batch started and its seconds."""
        forwarded: _Forwarded = await self._forward_batch(chunk)
        return forwarded

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, batch_size_fn=images_in)
    async def _forward_batch(self, chunks: list[np.ndarray]) -> list[_Forwarded]:
        started = time.perf_counter()
        stacked = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        probs = await self.forward(stacked)
        seconds = time.perf_counter() - started
        self.images_done += len(stacked)
        self.batches_done += 1
        return _forwarded_slices(chunks, probs, started, seconds)


class ModelServer:
    """Serve one model: studies in, versioned results out.

    Args:
        settings: Settings without secrets; storage credentials come from this
            node's environment or secret file.
        card_json: The model card as JSON.
        log_level: Level of this replica's medray log records.
    """

    def __init__(self, settings: Settings, card_json: str, log_level: str) -> None:
        configure_logging(log_level, "text")
        bind_replica_grpc_to_loopback()
        self.settings = settings
        self.card = ModelCard.from_json(card_json)
        self.store = ObjectStore.from_settings(settings.storage)
        weights = ModelRegistry(self.store, settings).fetch_weights(self.card)
        self.device = resolve_device(settings.inference.device)
        threads = int(os.environ.get("MEDRAY_TORCH_THREADS", "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        self.model = load_model(self.card, weights, self.device)
        self.limits = DecodeLimits(
            max_decoded_bytes=settings.preprocessing.max_decoded_mb * 1024 * 1024
        )
        self.max_batch = settings.serve.batch_max_size
        batcher = ServeBatcher if settings.serve.batcher == "ray" else Batcher
        self.batcher: ImageBatcher = batcher(
            self._forward, self.max_batch, settings.serve.batch_wait_timeout_s
        )
        logger.info(
            "model %s %s loaded on %s", self.card.name, self.card.version, self.device
        )

    def info(self) -> dict[str, Any]:
        """Return the card and counters of this replica."""
        return {
            "model": {
                "name": self.card.name,
                "version": self.card.version,
                "sha256": self.card.sha256,
            },
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "batcher": type(self.batcher).__name__,
            "images": self.batcher.images_done,
            "batches": self.batcher.batches_done,
        }

    async def _forward(self, stacked: np.ndarray) -> np.ndarray:
        return await asyncio.to_thread(
            predict_batch, self.model, stacked, self.device, batch_size=len(stacked)
        )

    async def _infer_series(
        self, inputs: np.ndarray | None, stages: dict[str, float]
    ) -> np.ndarray | None:
        if inputs is None or len(inputs) == 0:
            return None
        step = self.max_batch
        chunks = [inputs[i : i + step] for i in range(0, len(inputs), step)]
        called = time.perf_counter()
        parts = await asyncio.gather(*(self.batcher.submit(c) for c in chunks))
        for _, started, seconds in parts:
            wait_ms = 1000 * (started - called)
            stages["batch_wait"] = max(stages.get("batch_wait", 0.0), wait_ms)
            stages["forward"] = max(stages.get("forward", 0.0), 1000 * seconds)
        return np.concatenate([p for p, _, _ in parts])

    def _prepare_upload(self, objects: Sequence[tuple[str, bytes]]) -> PreparedStudy:
        images = assemble_study(objects, self.limits)
        study_uid, images = vet_upload(objects, images)
        return prepare_images(study_uid, images, self.card)

    async def _answer(
        self, prepare: Callable[[], PreparedStudy]
    ) -> tuple[PreparedStudy, Answer]:
        stages: dict[str, float] = {}
        started = time.perf_counter()
        prepared = await asyncio.to_thread(prepare)
        prepared_at = time.perf_counter()
        probs = await asyncio.gather(
            *(self._infer_series(s.inputs, stages) for s in prepared.series)
        )
        inferred_at = time.perf_counter()
        result = finish_study(prepared, list(probs), self.card)
        done = time.perf_counter()
        stages["prepare"] = 1000 * (prepared_at - started)
        stages["finish"] = 1000 * (done - inferred_at)
        stages["model"] = 1000 * (done - started)
        return prepared, Answer(result, stages)

    async def predict(self, objects: list[tuple[str, bytes]]) -> Answer:
        """Answer a study sent with the request.

        Each instance is read once: the upload's checks (`vet_upload`) use the
        headers of the decode.

        Args:
            objects: ``(name, bytes)`` of each uploaded instance.

        Returns:
            The result, as `finish_study` builds it, and the time of each stage;
            or the rejection of an upload that is not one study of images.
        """
        try:
            prepared, answer = await self._answer(
                functools.partial(self._prepare_upload, objects)
            )
        except RequestRejected as exc:
            return Answer({}, rejection=(exc.status, exc.code, exc.message))
        logger.info(
            "study %s: %d series, %d images, %.0f ms",
            prepared.study_key,
            len(prepared.series),
            prepared.input_count(),
            answer.stages_ms["model"],
        )
        return answer

    async def predict_stored(
        self, bucket: str, study_uid: str, keys: list[str], job_id: str
    ) -> dict[str, Any]:
        """Fetch a study from the bucket, answer it and write its result.

        The result goes where the batch job writes it (`result_key`), so a later
        `medray run` over the prefix finds it done.

        Args:
            bucket: Bucket of the study's objects and of the result.
            study_uid: StudyInstanceUID.
            keys: Object keys of the study's instances.
            job_id: Id of the job, for log records.

        Returns:
            The result.
        """
        objects = await asyncio.to_thread(self.store.get_many, bucket, keys)
        prepared, answer = await self._answer(
            functools.partial(prepare_study, study_uid, objects, self.card, self.limits)
        )
        result = answer.result
        del objects
        key = result_key(
            self.settings.inference.results_prefix, self.card, prepared.study_key
        )
        await asyncio.to_thread(
            self.store.put, bucket, key, dumps_result(result), "application/json"
        )
        with log_context(job_id=job_id, study_key=prepared.study_key):
            logger.info("study written to %s", key)
        return result
