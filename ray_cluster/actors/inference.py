"""The inference actor: holds one model and batches images across studies."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from models import ModelCard, load_model, resolve_device
from ray_cluster.config import Settings
from ray_cluster.log import configure_logging
from ray_cluster.processing import predict_study_images
from ray_cluster.registry import ModelRegistry
from ray_cluster.storage import ObjectStore

__all__ = ["InferenceWorker"]

logger = logging.getLogger(__name__)


@dataclass
class _Request:
    images: np.ndarray
    done: asyncio.Future[np.ndarray]


class InferenceWorker:
    """Run a model over images sent by preprocessing actors, in batches.

    Requests that arrive within ``inference.batch_wait_ms`` of each other share
    one forward pass of at most ``inference.max_batch_size`` images, whichever
    study they come from.

    Args:
        settings: Settings without secrets; credentials come from this node.
        card_json: The model card as JSON.
        log_level: Level of this actor's log records.
    """

    def __init__(self, settings: Settings, card_json: str, log_level: str) -> None:
        configure_logging(log_level, "text")
        self.card = ModelCard.from_json(card_json)
        self.settings = settings
        store = ObjectStore.from_settings(settings.storage)
        weights = ModelRegistry(store, settings).fetch_weights(self.card)
        self.device = resolve_device(settings.inference.device)
        threads = max(1, int(os.environ.get("MEDRAY_TORCH_THREADS", "0") or 0))
        if threads:
            torch.set_num_threads(threads)
        self.model = load_model(self.card, weights, self.device)
        self._pending: list[_Request] = []
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self.images_done = 0
        self.batches_done = 0
        logger.info(
            "model %s %s loaded on %s", self.card.name, self.card.version, self.device
        )

    def info(self) -> dict[str, object]:
        """Return the device and counters of this actor."""
        return {
            "device": str(self.device),
            "images": self.images_done,
            "batches": self.batches_done,
        }

    async def predict(self, images: np.ndarray) -> np.ndarray:
        """Return ``(N, K)`` probabilities for ``(N, C, H, W)`` images."""
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(np.asarray(images, dtype=np.float32), future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        assert self._wakeup is not None
        wait_s = self.settings.inference.batch_wait_ms / 1000.0
        limit = self.settings.inference.max_batch_size
        while True:
            await self._wakeup.wait()
            deadline = time.monotonic() + wait_s
            while sum(len(r.images) for r in self._pending) < limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except TimeoutError:
                    break
            batch: list[_Request] = []
            count = 0
            while self._pending and (not batch or count < limit):
                request = self._pending.pop(0)
                batch.append(request)
                count += len(request.images)
            if not self._pending:
                self._wakeup.clear()
            await self._forward(batch)

    async def _forward(self, batch: list[_Request]) -> None:
        try:
            stacked = np.concatenate([r.images for r in batch])
            probs = await asyncio.to_thread(self._chunked, stacked)
        except Exception as exc:  # handed to every waiting caller
            for request in batch:
                if not request.done.done():
                    request.done.set_exception(exc)
            return
        start = 0
        for request in batch:
            stop = start + len(request.images)
            if not request.done.done():
                request.done.set_result(probs[start:stop])
            start = stop
        self.images_done += len(stacked)
        self.batches_done += 1

    def _chunked(self, images: np.ndarray) -> np.ndarray:
        return predict_study_images(self.model, images, self.device)
