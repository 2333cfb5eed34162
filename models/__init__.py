"""PyTorch models for medray: cards, weights, registry, training and inference.

This package never imports Ray or `pipelines`; it works on prepared arrays. It
adds only a NullHandler to its logger: applications configure logging.
"""

from __future__ import annotations

import logging

from models.errors import (
    CardError,
    ModelError,
    UnknownModelError,
    WeightsChecksumError,
)
from models.predict import (
    combine,
    predict_batch,
    resolve_device,
    round_probs,
    top_label,
)
from models.reference import resnet18_1ch
from models.registry import (
    ModelBuilder,
    get_builder,
    list_architectures,
    load_model,
    register_model,
)
from models.train import (
    REFERENCE_LABELS,
    Sample,
    TrainResult,
    reference_input_spec,
    reference_label,
    split_studies,
    train_reference,
)
from models.untrained import make_untrained
from models.weights import (
    ModelCard,
    load_weights,
    save_weights,
    serialize_weights,
    sha256_file,
)

__all__ = [
    "REFERENCE_LABELS",
    "CardError",
    "ModelBuilder",
    "ModelCard",
    "ModelError",
    "Sample",
    "TrainResult",
    "UnknownModelError",
    "WeightsChecksumError",
    "combine",
    "get_builder",
    "list_architectures",
    "load_model",
    "load_weights",
    "make_untrained",
    "predict_batch",
    "reference_input_spec",
    "reference_label",
    "register_model",
    "resnet18_1ch",
    "resolve_device",
    "round_probs",
    "save_weights",
    "serialize_weights",
    "sha256_file",
    "split_studies",
    "top_label",
    "train_reference",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
