"""The model registry: cards and weights under a prefix of the object store.

Layout: ``s3://<registry_bucket>/<registry_prefix>/<name>/<version>/`` holds
``card.json`` and ``weights.safetensors``. Weights are cached on each node under
``inference.cache_dir/<sha256>.safetensors`` and checked against the card's
sha256 before use.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from models import ModelCard, sha256_file
from ray_cluster.config import Settings
from ray_cluster.errors import ObjectNotFoundError, StorageError
from ray_cluster.storage import ObjectStore

__all__ = ["ModelRegistry"]

logger = logging.getLogger(__name__)

CARD_NAME = "card.json"
WEIGHTS_NAME = "weights.safetensors"


def _version_order(version: str) -> tuple[tuple[int, int | str], ...]:
    parts: list[tuple[int, int | str]] = []
    for piece in version.replace("-", ".").split("."):
        parts.append((0, int(piece)) if piece.isdigit() else (1, piece))
    return tuple(parts)


class ModelRegistry:
    """Model cards and weights in a bucket prefix.

    Args:
        store: Object store client.
        settings: Settings; ``inference.registry_bucket``/``registry_prefix``
            locate the registry and ``inference.cache_dir`` the local cache.
    """

    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        self._store = store
        self.bucket = settings.inference.registry_bucket or settings.storage.bucket
        self.prefix = settings.inference.registry_prefix.strip("/")
        self.cache_dir = Path(settings.inference.cache_dir)

    def _key(self, name: str, version: str, leaf: str) -> str:
        return f"{self.prefix}/{name}/{version}/{leaf}"

    def url(self, name: str, version: str) -> str:
        """Return the s3 URL of one model version's folder."""
        return f"s3://{self.bucket}/{self.prefix}/{name}/{version}/"

    def push(self, card: ModelCard, weights_path: Path) -> str:
        """Upload weights, then the card (so a visible card has its weights).

        Returns:
            The s3 URL of the version folder.

        Raises:
            ValueError: The weights file does not match ``card.sha256``.
        """
        actual = sha256_file(weights_path)
        if actual != card.sha256:
            raise ValueError(
                f"weights {weights_path} have sha256 {actual[:12]}, the card of "
                f"{card.name} {card.version} says {card.sha256[:12]}; rebuild the card"
            )
        self._store.ensure_bucket(self.bucket)
        self._store.put(
            self.bucket,
            self._key(card.name, card.version, WEIGHTS_NAME),
            weights_path.read_bytes(),
            content_type="application/octet-stream",
        )
        self._store.put(
            self.bucket,
            self._key(card.name, card.version, CARD_NAME),
            card.to_json().encode("utf-8"),
            content_type="application/json",
        )
        logger.info("pushed model %s %s (%s)", card.name, card.version, actual[:12])
        return self.url(card.name, card.version)

    def list_cards(self) -> list[ModelCard]:
        """Return every card in the registry, sorted by name then version."""
        cards = []
        for info in self._store.list(self.bucket, f"{self.prefix}/"):
            if info.key.endswith("/" + CARD_NAME):
                data = self._store.get(self.bucket, info.key)
                cards.append(ModelCard.from_json(data.decode("utf-8")))
        cards.sort(key=lambda c: (c.name, _version_order(c.version)))
        return cards

    def get_card(self, name: str, version: str | None = None) -> ModelCard:
        """Return one card; the highest version when ``version`` is None.

        Raises:
            ObjectNotFoundError: No such model or version in the registry.
        """
        if version is not None:
            key = self._key(name, version, CARD_NAME)
            data = self._store.get(self.bucket, key)
            return ModelCard.from_json(data.decode("utf-8"))
        versions = [c for c in self.list_cards() if c.name == name]
        if not versions:
            known = sorted({c.name for c in self.list_cards()})
            raise ObjectNotFoundError(
                f"no model named {name!r} in s3://{self.bucket}/{self.prefix}/; "
                f"known: {', '.join(known) or 'none'}. Push one with `medray models "
                "push` or train the reference with `medray models train-reference`",
                key=f"{self.prefix}/{name}/",
            )
        return versions[-1]

    def fetch_weights(self, card: ModelCard) -> Path:
        """Return a local path of the card's weights, downloading once per node."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        target = self.cache_dir / f"{card.sha256}.safetensors"
        if target.exists() and sha256_file(target) == card.sha256:
            return target
        key = self._key(card.name, card.version, WEIGHTS_NAME)
        try:
            data = self._store.get(self.bucket, key)
        except ObjectNotFoundError:
            raise StorageError(
                f"weights of {card.name} {card.version} are missing at "
                f"s3://{self.bucket}/{key}; push the model again",
                key=key,
            ) from None
        handle, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".part")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
        logger.info("cached weights of %s %s", card.name, card.version)
        return target
