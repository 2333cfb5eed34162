"""The model deployment: one model, dynamic batching across requests.

Each replica loads one model version (weights fetched from the registry on its
node and checked against the card's sha256) and answers studies with the same
`prepare_study` / `finish_study` path as the batch job, so both give the same
result. Images of concurrent requests share forward passes through
``@serve.batch``: a batch holds at most ``serve.batch_max_size`` images and waits
at most ``serve.batch_wait_timeout_s`` to fill.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ray import serve

from models import ModelCard, load_model, predict_batch, resolve_device
from pipelines import DecodeLimits
from ray_cluster.config import Settings
from ray_cluster.log import configure_logging, log_context
from ray_cluster.processing import (
    PreparedStudy,
    dumps_result,
    finish_study,
    prepare_study,
    result_key,
)
from ray_cluster.registry import ModelRegistry
from ray_cluster.storage import ObjectStore

__all__ = ["ModelServer", "images_in"]

def _trace(**kw: Any) -> None:  # TEMP
    path = os.environ.get("MEDRAY_TRACE")
    if path:
        import json as _j
        with open(path, "a") as f:
            f.write(_j.dumps(kw) + "\n")


logger = logging.getLogger(__name__)


def images_in(chunks: Sequence[np.ndarray]) -> int:
    """Return how many images a list of ``(N, C, H, W)`` chunks holds."""
    return sum(len(c) for c in chunks)


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
        batcher: Any = self._forward
        batcher.set_max_batch_size(self.max_batch)
        batcher.set_batch_wait_timeout_s(settings.serve.batch_wait_timeout_s)
        self.images_done = 0
        self.batches_done = 0
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
            "images": self.images_done,
            "batches": self.batches_done,
        }

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01, batch_size_fn=images_in)
    async def _forward(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        stacked = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        t1 = time.perf_counter()
        probs = await asyncio.to_thread(
            predict_batch, self.model, stacked, self.device, batch_size=len(stacked)
        )
        t2 = time.perf_counter()
        _trace(w="batch", start=t0, fwd=(t2-t1)*1000, n=len(stacked), threads=torch.get_num_threads())
        self.images_done += len(stacked)
        self.batches_done += 1
        out, start = [], 0
        for chunk in chunks:
            out.append(probs[start : start + len(chunk)])
            start += len(chunk)
        return out

    async def _infer_series(self, inputs: np.ndarray | None) -> np.ndarray | None:
        if inputs is None or len(inputs) == 0:
            return None
        step = self.max_batch
        chunks = [inputs[i : i + step] for i in range(0, len(inputs), step)]
        parts = await asyncio.gather(*(self._forward(c) for c in chunks))
        return np.concatenate(parts)

    async def _answer(
        self, study_uid: str, objects: Sequence[tuple[str, bytes]]
    ) -> tuple[PreparedStudy, dict[str, Any]]:
        t0 = time.perf_counter()
        prepared = await asyncio.to_thread(
            prepare_study, study_uid, objects, self.card, self.limits
        )
        t1 = time.perf_counter()
        probs = await asyncio.gather(
            *(self._infer_series(s.inputs) for s in prepared.series)
        )
        t2 = time.perf_counter()
        r = finish_study(prepared, list(probs), self.card)
        t3 = time.perf_counter()
        _trace(w="model", entry=t0, prep=(t1-t0)*1000, infer_call=t1, infer=(t2-t1)*1000, finish=(t3-t2)*1000)
        return prepared, r

    async def predict(
        self, study_uid: str, objects: list[tuple[str, bytes]]
    ) -> dict[str, Any]:
        """Return the result of a study sent with the request.

        Args:
            study_uid: StudyInstanceUID of the objects.
            objects: ``(name, bytes)`` of each instance with pixel data.

        Returns:
            The result, as `finish_study` builds it.
        """
        started = time.perf_counter()
        prepared, result = await self._answer(study_uid, objects)
        logger.info(
            "study %s: %d series, %d images, %.0f ms",
            prepared.study_key,
            len(prepared.series),
            prepared.input_count(),
            1000 * (time.perf_counter() - started),
        )
        return result

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
        objects = await asyncio.to_thread(self._fetch, bucket, keys)
        prepared, result = await self._answer(study_uid, objects)
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

    def _fetch(self, bucket: str, keys: Sequence[str]) -> list[tuple[str, bytes]]:
        return [(key, self.store.get(bucket, key)) for key in keys]
