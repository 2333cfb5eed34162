"""Model cards and weights files.

A model is published as two objects: `weights.safetensors` and `card.json`.
The card names the architecture, the labels, the input the model expects and the
sha256 of the weights file; `load_weights` refuses a file whose bytes do not
match that hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import safetensors
import safetensors.torch
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from models.errors import CardError, ModelError, WeightsChecksumError

__all__ = [
    "CARD_SCHEMA_VERSION",
    "COMBINE_METHODS",
    "ModelCard",
    "load_weights",
    "save_weights",
    "serialize_weights",
    "sha256_file",
]

logger = logging.getLogger(__name__)

CARD_SCHEMA_VERSION: Literal[1] = 1
"""The card layout this code writes and reads."""

COMBINE_METHODS = ("mean", "max", "geometric_mean")
"""Ways to combine per-image probabilities into one series result."""

_SHORT_HASH = 12
_CHUNK_BYTES = 1 << 20
_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class _Block(BaseModel):
    """Base of the input sub-blocks: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class _PercentileIntensity(_Block):
    mode: Literal["percentile"] = Field(
        description="Scale intensities between two percentiles of the image."
    )
    low: float = Field(ge=0, le=100, description="Percentile mapped to 0.")
    high: float = Field(ge=0, le=100, description="Percentile mapped to 1.")

    @model_validator(mode="after")
    def _ordered(self) -> _PercentileIntensity:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class _WindowIntensity(_Block):
    mode: Literal["window"] = Field(
        description="Scale intensities through a fixed window (CT, in HU)."
    )
    center: float = Field(description="Window center, in HU.")
    width: float = Field(gt=0, description="Window width, in HU.")


class _Normalize(_Block):
    mean: float = Field(description="Subtracted after intensity scaling.")
    std: float = Field(gt=0, description="Divides after the mean is subtracted.")


class _Volume(_Block):
    slices: int = Field(ge=1, description="Slices sampled along Z of a volume.")
    sampling: Literal["uniform"] = Field(
        description="How slices are chosen: evenly spaced along Z."
    )
    combine: Literal["mean", "max", "geometric_mean"] = Field(
        description="How per-slice or per-image probabilities become one result."
    )


class _InputSpec(_Block):
    dims: Literal[2] = Field(description="Spatial dimensions of one model input.")
    channels: int = Field(ge=1, description="Channels of one model input.")
    size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = Field(
        description="Height and width of one model input, in pixels."
    )
    intensity: _PercentileIntensity | _WindowIntensity = Field(
        discriminator="mode", description="How raw intensities are scaled to [0, 1]."
    )
    normalize: _Normalize = Field(description="Normalization after scaling.")
    volume: _Volume = Field(description="How volumes and image stacks are sampled.")


class ModelCard(BaseModel):
    """What a weights file is, what it expects and how it was made.

    The card is the contract between training, the batch job and the HTTP
    service: `input` tells `pipelines.transforms.build_input` how to prepare
    arrays, `labels` names the model outputs in order, and `sha256` pins the
    weights file.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = Field(
        default=CARD_SCHEMA_VERSION, description="Layout version of this card."
    )
    name: str = Field(
        pattern=_NAME_PATTERN,
        description="Model name; part of object keys, so lower case and short.",
    )
    version: str = Field(
        pattern=_NAME_PATTERN,
        description="Model version; part of object keys, so lower case and short.",
    )
    architecture: str = Field(
        min_length=1, description="Registered builder name, see `list_architectures`."
    )
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="Hex sha256 of the weights file's bytes.",
    )
    labels: list[str] = Field(
        min_length=1, description="Output class names, in the order of the logits."
    )
    input: dict[str, Any] = Field(
        description=(
            "Input block: dims, channels, size, intensity, normalize, volume "
            "(see docs/design.md)."
        )
    )
    metrics: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=dict, description="Held-out evaluation results."
    )
    split: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "How training and evaluation data were split: method, seed, counts "
            "per side and label, held-out study keys."
        ),
    )
    description: str = Field(default="", description="What the model does.")
    intended_use: str = Field(
        default="", description="Who may use the model, and for what."
    )
    created_by: str = Field(
        default="", description="The code or person that produced the weights."
    )

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, labels: list[str]) -> list[str]:
        if any(not label for label in labels):
            raise ValueError("labels must be non-empty strings")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be unique, got {labels}")
        return labels

    @field_validator("input")
    @classmethod
    def _input_valid(cls, block: dict[str, Any]) -> dict[str, Any]:
        spec = _InputSpec.model_validate(block)
        return spec.model_dump(mode="json")

    def to_json(self) -> str:
        """Serializes the card with sorted keys, so equal cards give equal text.

        Returns:
            Indented JSON ending with a newline.
        """
        data = self.model_dump(mode="json")
        return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelCard:
        """Parses and validates a card written by `to_json`.

        Args:
            text: The card's JSON text.

        Returns:
            The validated card.

        Raises:
            CardError: The text is not JSON, has unknown keys or invalid values.
        """
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<card>'}: {err['msg']}"
                for err in exc.errors()
            )
            first = exc.errors()[0]["loc"] if exc.errors() else ()
            raise CardError(
                f"invalid model card: {problems}",
                field=str(first[0]) if first else None,
            ) from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hashes a file in chunks.

    Args:
        path: The file to hash.

    Returns:
        The hex sha256 of the file's bytes.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def serialize_weights(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    """Encodes a state dict as safetensors bytes, the same bytes `save_weights`
    writes.

    Tensors are copied to CPU and made contiguous; equal state dicts give equal
    bytes, so the sha256 of these bytes can go into a card before any file exists.

    Args:
        state_dict: Parameter and buffer tensors by name.

    Returns:
        The safetensors encoding.
    """
    tensors = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in state_dict.items()
    }
    return safetensors.torch.save(tensors)


def save_weights(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike[str]
) -> str:
    """Writes a state dict as a safetensors file, atomically.

    Args:
        state_dict: Parameter and buffer tensors by name.
        path: The file to write; its directory must exist.

    Returns:
        The hex sha256 of the written file, for the model card.
    """
    data = serialize_weights(state_dict)
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise

    digest = hashlib.sha256(data).hexdigest()
    logger.debug("wrote %s (%d bytes, sha256 %s)", target, len(data), digest[:12])
    return digest


def load_weights(
    path: str | os.PathLike[str], expected_sha256: str
) -> dict[str, torch.Tensor]:
    """Reads a safetensors file after checking its sha256.

    The bytes are read once, hashed and decoded from memory, so the file cannot
    change between the check and the load.

    Args:
        path: The weights file.
        expected_sha256: The hex sha256 recorded in the model card.

    Returns:
        The state dict, on CPU.

    Raises:
        WeightsChecksumError: The file's sha256 differs from `expected_sha256`.
        ModelError: The file matches but is not a readable safetensors file.
        FileNotFoundError: The file does not exist.
    """
    data = Path(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    expected = expected_sha256.lower()
    if actual != expected:
        raise WeightsChecksumError(
            f"weights file {os.fspath(path)} has sha256 {actual[:_SHORT_HASH]}..., "
            f"its card expects {expected[:_SHORT_HASH]}...; the file is corrupt "
            "or belongs to another card, fetch the pair again",
            path=os.fspath(path),
            expected=expected,
            actual=actual,
        )

    try:
        state = safetensors.torch.load(data)
    except (safetensors.SafetensorError, ValueError) as exc:
        raise ModelError(
            f"weights file {os.fspath(path)} is not a readable safetensors file: {exc}"
        ) from exc
    return dict(state)
