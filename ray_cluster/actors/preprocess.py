"""The preprocessing actor: fetch, decode, preprocess, ask the model, write."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from models import ModelCard
from pipelines import DecodeLimits
from ray_cluster.config import Settings
from ray_cluster.log import configure_logging, log_context
from ray_cluster.processing import (
    dumps_result,
    finish_study,
    prepare_study,
    result_key,
)
from ray_cluster.storage import ObjectStore

__all__ = ["PreprocessWorker", "StudyTask"]

logger = logging.getLogger(__name__)

#: (job id, study uid, study key, object keys, attempt)
StudyTask = tuple[str, str, str, Sequence[str], int]


class PreprocessWorker:
    """Turn one study at a time into a result object in the bucket.

    Args:
        settings: Settings without secrets; credentials come from this node.
        card_json: The model card as JSON.
        bucket: Bucket of the studies and results.
        inference: Handles of inference actors (``predict`` remote method),
            used in turn when `process` is not given one; the batch driver
            gives one per study so that it can replace a dead one.
        log_level: Level of this actor's log records.
    """

    def __init__(
        self,
        settings: Settings,
        card_json: str,
        bucket: str,
        inference: Sequence[Any],
        log_level: str,
    ) -> None:
        configure_logging(log_level, "text")
        self.settings = settings
        self.card = ModelCard.from_json(card_json)
        self.bucket = bucket
        self.store = ObjectStore.from_settings(settings.storage)
        self._inference = itertools.cycle(list(inference))
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.limits = DecodeLimits(
            max_decoded_bytes=settings.preprocessing.max_decoded_mb * 1024 * 1024
        )

    def ready(self) -> str:
        """Return this worker's name once constructed."""
        return self.worker

    async def _infer(
        self, inputs: list[np.ndarray | None], handle: Any
    ) -> list[np.ndarray | None]:

        async def one(x: np.ndarray | None) -> np.ndarray | None:
            if x is None or len(x) == 0:
                return None
            result: np.ndarray = await handle.predict.remote(x)
            return result

        return list(await asyncio.gather(*(one(x) for x in inputs)))

    async def process(self, task: StudyTask, inference: Any = None) -> dict[str, Any]:
        """Process one study and write its result; return outcome and timings.

        Bad objects end up in the result; other errors propagate so that the
        driver retries the study.

        Args:
            task: The study.
            inference: Handle of the inference actor to ask; None takes the
                next of those given at construction.

        Returns:
            Outcome, counts and stage timings of the study.
        """
        job_id, study_uid, key_of_study, keys, attempt = task
        handle = inference if inference is not None else next(self._inference)
        with log_context(job_id=job_id, study_key=key_of_study, worker=self.worker):
            return await self._process(
                job_id, study_uid, key_of_study, keys, attempt, handle
            )

    async def _process(
        self,
        job_id: str,
        study_uid: str,
        key_of_study: str,
        keys: Sequence[str],
        attempt: int,
        handle: Any,
    ) -> dict[str, Any]:
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        objects = await asyncio.to_thread(self.store.get_many, self.bucket, keys)
        timings["fetch_s"] = time.perf_counter() - clock

        clock = time.perf_counter()
        prepared = await asyncio.to_thread(
            prepare_study, study_uid, objects, self.card, self.limits
        )
        del objects
        timings["preprocess_s"] = time.perf_counter() - clock

        clock = time.perf_counter()
        probs = await self._infer([s.inputs for s in prepared.series], handle)
        timings["infer_s"] = time.perf_counter() - clock

        clock = time.perf_counter()
        result = finish_study(prepared, probs, self.card)
        key = result_key(
            self.settings.inference.results_prefix, self.card, key_of_study
        )
        await asyncio.to_thread(
            self.store.put, self.bucket, key, dumps_result(result), "application/json"
        )
        timings["write_s"] = time.perf_counter() - clock
        error = result["error"]
        if error is None:
            logger.info("study done: %d series", len(prepared.series))
        else:
            logger.warning("study failed: %s", error["code"])
        return {
            "study_key": key_of_study,
            "status": "ok" if error is None else "failed",
            "error": error,
            "result_key": key,
            "images": prepared.input_count(),
            "object_errors": len(prepared.errors),
            "attempt": attempt,
            "worker": self.worker,
            "timings": timings,
        }
