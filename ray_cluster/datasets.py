"""A torch Dataset over the studies of a prefix, for notebooks.

Each item is one readable series of a study, decoded and preprocessed exactly as
the batch job does for a model card's ``input`` block, with its report.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import Dataset

from pipelines import build_input, study_key
from ray_cluster.catalog import ensure_catalog
from ray_cluster.config import Settings, load_settings
from ray_cluster.storage import ObjectStore, S3Url

__all__ = ["StudyDataset"]

logger = logging.getLogger(__name__)


class StudyDataset(Dataset[dict[str, Any]]):
    """Studies under a prefix as model-ready tensors.

    Args:
        url: ``s3://bucket/prefix``.
        input_spec: A model card's ``input`` block (e.g. ``card.input``).
        settings: Settings; loaded from the environment when None.

    Items are dicts: ``study_key``, ``study_uid``, ``series`` (list of
    ``{"series_uid", "kind", "report", "input": Tensor (N, C, H, W)}``).
    """

    def __init__(
        self, url: str, input_spec: dict[str, Any], settings: Settings | None = None
    ) -> None:
        self.url = url
        self.spec = dict(input_spec)
        self.settings = settings or load_settings()
        self._target = S3Url.parse(url)
        self._store = ObjectStore.from_settings(self.settings.storage)
        studies = ensure_catalog(self._store, self.settings, self._target).studies()
        self.study_uids = sorted(studies, key=study_key)
        self._keys = {uid: [h.key for h in studies[uid]] for uid in self.study_uids}

    def __len__(self) -> int:
        return len(self.study_uids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from pipelines import assemble_study

        uid = self.study_uids[index]
        objects = self._store.get_many(self._target.bucket, self._keys[uid])
        images = assemble_study(objects)
        series = [
            {
                "series_uid": s.series_uid,
                "kind": s.kind,
                "report": s.report.to_dict(),
                "input": torch.from_numpy(build_input(s, self.spec)),
            }
            for s in images.series
            if s.kind in ("volume", "2d")
        ]
        return {"study_key": study_key(uid), "study_uid": uid, "series": series}
