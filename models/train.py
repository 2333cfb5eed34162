"""Training the reference model: a series-type classifier for demonstrations.

The reference model tells what kind of image a series holds (axial CT, CT
localizer, MR, radiograph, other). Its labels come from header facts through
`reference_label`, so no human annotation is needed; it exists to exercise the
batch job and the HTTP service end to end and is not for clinical use.

Training and evaluation data are split by study, never by image: images of one
study are strongly correlated, and splitting them would inflate the held-out
accuracy.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.predict import resolve_device
from models.registry import get_builder
from models.weights import ModelCard, serialize_weights

__all__ = [
    "REFERENCE_ARCHITECTURE",
    "REFERENCE_INTENDED_USE",
    "REFERENCE_LABELS",
    "Sample",
    "TrainResult",
    "reference_input_spec",
    "reference_label",
    "split_studies",
    "train_reference",
]

logger = logging.getLogger(__name__)

REFERENCE_LABELS = ["ct_axial", "ct_localizer", "mr", "radiograph", "other"]
"""Output labels of the reference model, in logit order."""

REFERENCE_ARCHITECTURE = "resnet18_1ch"
"""Registered builder the reference model uses."""

REFERENCE_INTENDED_USE = "demonstration only, not for clinical use"
"""The reference model's `intended_use`."""

_NORMALIZE_MEAN = 0.5
_NORMALIZE_STD = 0.25

_LOCALIZER_TOKENS = frozenset({"LOCALIZER", "SCOUT", "TOPOGRAM"})
_PROJECTION_MODALITIES = frozenset(
    {"CR", "DX", "DR", "RG", "MG", "PX", "IO", "XA", "RF"}
)


def reference_label(
    modality: str | None,
    image_type: Sequence[str] | str = (),
    *,
    is_volume: bool = False,
) -> str:
    """Derives a series' reference label from its header facts.

    The rules, in order (modality and ImageType values compared in upper case):

    1. Modality `CT` with `LOCALIZER`, `SCOUT` or `TOPOGRAM` among the ImageType
       values -> `ct_localizer` (vendors name the planning image differently).
    2. Any other `CT` series -> `ct_axial`, volume or not.
    3. `MR` -> `mr`.
    4. A projection X-ray modality -> `radiograph`: `CR`, `DX`, `RG`, `MG`,
       `PX`, `IO`, the non-standard but common `DR`, and the fluoroscopic `XA`
       and `RF`. A series of these modalities that was assembled into a volume
       (for example a rotational angiography reconstruction) is not a
       radiograph and falls through to the next rule.
    5. Anything else, including a missing modality -> `other`.

    Args:
        modality: The series' Modality (0008,0060), or None when absent.
        image_type: The ImageType (0008,0008) values; a backslash-joined
            string is split.
        is_volume: Whether the series was assembled into a volume.

    Returns:
        One of `REFERENCE_LABELS`.
    """
    code = (modality or "").strip().upper()
    if isinstance(image_type, str):
        image_type = image_type.split("\\")
    tokens = {value.strip().upper() for value in image_type}

    if code == "CT":
        return "ct_localizer" if tokens & _LOCALIZER_TOKENS else "ct_axial"
    if code == "MR":
        return "mr"
    if code in _PROJECTION_MODALITIES and not is_volume:
        return "radiograph"
    return "other"


def reference_input_spec(image_size: int = 64) -> dict[str, Any]:
    """Returns the reference model's card `input` block.

    Args:
        image_size: Height and width of one input, in pixels.

    Returns:
        The block described in docs/design.md, sized `image_size` square.
    """
    return {
        "dims": 2,
        "channels": 1,
        "size": [image_size, image_size],
        "intensity": {"mode": "percentile", "low": 1.0, "high": 99.0},
        "normalize": {"mean": _NORMALIZE_MEAN, "std": _NORMALIZE_STD},
        "volume": {"slices": 5, "sampling": "uniform", "combine": "mean"},
    }


@dataclass(frozen=True, eq=False)
class Sample:
    """One training image.

    Attributes:
        image: Float32 array shaped (H, W), already prepared per the card's
            input block (scaled and normalized).
        label: One of the labels being trained.
        study_key: The study the image belongs to; the split keeps a study's
            images together.
    """

    image: np.ndarray
    label: str
    study_key: str


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What `train_reference` produces.

    Attributes:
        state_dict: The trained weights, on CPU; `save_weights` writes the file
            whose sha256 the card records.
        card: The model card.
        metrics: The held-out metrics (the same as `card.metrics`).
    """

    state_dict: dict[str, torch.Tensor]
    card: ModelCard
    metrics: dict[str, float]


def split_studies(
    study_labels: Mapping[str, Collection[str]],
    eval_fraction: float,
    seed: int,
) -> tuple[list[str], list[str]]:
    """Splits studies into a training and an evaluation side.

    The split is deterministic for a given seed. A study never lands on the
    evaluation side if that would take the last training study of one of its
    labels. Every label found in two or more studies first gets one evaluation
    study when possible (rarest labels first); the remaining evaluation places
    are filled in seeded random order up to `round(n * eval_fraction)` studies
    (at least one). Coverage wins over the fraction: with many labels and few
    studies, more studies may be held out than the fraction asks.

    Args:
        study_labels: The labels found in each study, by study key.
        eval_fraction: Share of studies to hold out, between 0 and 1 exclusive.
        seed: Seed of the shuffle.

    Returns:
        The training and the evaluation study keys, each sorted.

    Raises:
        ValueError: The fraction is out of range, there are fewer than two
            studies, or no study can be held out without removing a label from
            training.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    keys = sorted(study_labels)
    if len(keys) < 2:
        raise ValueError(f"need at least 2 studies to split by study, got {len(keys)}")

    random.Random(seed).shuffle(keys)
    target = min(len(keys) - 1, max(1, round(len(keys) * eval_fraction)))
    train_count: Counter[str] = Counter()
    for key in keys:
        train_count.update(set(study_labels[key]))
    held_out: list[str] = []

    def hold_out_if_possible(key: str) -> bool:
        labels = set(study_labels[key])
        if key in held_out or any(train_count[label] < 2 for label in labels):
            return False
        held_out.append(key)
        train_count.subtract(labels)
        return True

    total_count = dict(train_count)
    for label in sorted(total_count, key=lambda name: (total_count[name], name)):
        if total_count[label] < 2:
            continue
        if any(label in study_labels[key] for key in held_out):
            continue
        for key in keys:
            if label in study_labels[key] and hold_out_if_possible(key):
                break

    for key in keys:
        if len(held_out) >= target:
            break
        hold_out_if_possible(key)

    if not held_out:
        raise ValueError(
            "no study can be held out without removing a label from training; "
            "add studies or labels found in more than one study"
        )
    held = set(held_out)
    return sorted(k for k in keys if k not in held), sorted(held)


def _check_samples(
    samples: Sequence[Sample], labels: Sequence[str], image_size: int
) -> None:
    """Raises ValueError on empty input, unknown labels or misshapen images."""
    if not samples:
        raise ValueError("no samples to train on")
    known = set(labels)
    for index, sample in enumerate(samples):
        if sample.label not in known:
            raise ValueError(
                f"sample {index} (study {sample.study_key}) has label "
                f"{sample.label!r}, not one of {list(labels)}"
            )
        if sample.image.shape != (image_size, image_size):
            raise ValueError(
                f"sample {index} (study {sample.study_key}) is shaped "
                f"{sample.image.shape}, expected ({image_size}, {image_size}); "
                "prepare images to the card input size first"
            )


@contextmanager
def _deterministic(
    seed: int, device: torch.device, num_threads: int | None
) -> Iterator[None]:
    """Seeds torch, asks for deterministic kernels and fixes the CPU thread
    count (reductions may depend on it), restoring all three after."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    was_benchmark = torch.backends.cudnn.benchmark
    was_threads = torch.get_num_threads()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(was_threads)
            torch.use_deterministic_algorithms(
                was_deterministic, warn_only=was_warn_only
            )
            torch.backends.cudnn.benchmark = was_benchmark


def _uniform(
    count: int, low: float, high: float, generator: torch.Generator
) -> torch.Tensor:
    """`count` draws from U(low, high), shaped (count,)."""
    return low + (high - low) * torch.rand(count, generator=generator)


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random geometry and intensity changes of a batch of normalized images.

    Geometry: a left-right flip, a zoom of 0.86 to 1.16, a rotation of up to
    about 9 degrees and a shift of up to 8% of the size, resampled
    bilinearly with edge pixels repeated (never a grey frame). Intensity, on
    the 0..1 scale before normalization: a gamma of 0.74 to 1.35, contrast
    and brightness changes and a little Gaussian noise.
    """
    n = batch.shape[0]
    angle = _uniform(n, -0.15, 0.15, generator)
    zoom = torch.exp(_uniform(n, -0.15, 0.15, generator))
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    shift_x = _uniform(n, -0.16, 0.16, generator)
    shift_y = _uniform(n, -0.16, 0.16, generator)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift_x], dim=1),
            torch.stack([sin * flip, cos, shift_y], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    moved = F.grid_sample(
        batch, grid, mode="bilinear", padding_mode="border", align_corners=False
    )

    def per_image(low: float, high: float) -> torch.Tensor:
        return _uniform(n, low, high, generator).view(n, 1, 1, 1)

    unit = (moved * _NORMALIZE_STD + _NORMALIZE_MEAN).clamp(0.0, 1.0)
    unit = unit.pow(torch.exp(per_image(-0.3, 0.3)))
    unit = (unit - 0.5) * per_image(0.85, 1.15) + 0.5 + per_image(-0.05, 0.05)
    noise = torch.randn(moved.shape, generator=generator) * per_image(0.0, 0.02)
    unit = (unit + noise).clamp(0.0, 1.0)
    return (unit - _NORMALIZE_MEAN) / _NORMALIZE_STD


def _draw_weights(
    labels: Sequence[int], studies: Sequence[str], label_power: float | None
) -> torch.Tensor:
    """Per-image draw probabilities for balanced sampling.

    Each label gets a share proportional to its number of training studies
    raised to `label_power` (0: every label equally often; 1: as often as it
    has studies); a label's share is split evenly over its studies, and a
    study's part evenly over its images of that label. So a study of 100
    slices weighs as much as a study of one image, and a label found in
    three images is still seen. None draws every image equally often.
    """
    if label_power is None:
        return torch.full((len(labels),), 1.0 / len(labels), dtype=torch.float64)
    groups = Counter(zip(studies, labels, strict=True))
    label_studies = Counter(label for _, label in groups)
    label_mass = {label: n**label_power for label, n in label_studies.items()}
    total = sum(label_mass.values())
    weights = [
        label_mass[label] / total / label_studies[label] / groups[(study, label)]
        for study, label in zip(studies, labels, strict=True)
    ]
    return torch.tensor(weights, dtype=torch.float64)


def _batches(
    weights: torch.Tensor, batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """One epoch of index batches, as many draws as there are images, drawn
    with replacement by `weights`; a trailing batch of one is dropped
    (BatchNorm)."""
    count = weights.shape[0]
    order = torch.multinomial(weights, count, replacement=True, generator=generator)
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


def _batch_count(count: int, batch_size: int) -> int:
    """The number of batches `_batches` yields per epoch."""
    full, rest = divmod(count, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)


@torch.no_grad()
def _recalibrate_batchnorm(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """Recomputes BatchNorm running statistics as a plain average over the
    training images, so eval mode matches the final weights even after few
    steps.

    The images go through in shuffled batches: batches of one study or label
    would each have a small variance, and their average would understate the
    variance the model was trained with.
    """
    norms = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    order = torch.randperm(images.shape[0], generator=generator)
    chunks = -(-images.shape[0] // batch_size)
    for chunk in torch.tensor_split(order, chunks):
        if chunk.shape[0] > 1:
            model(images[chunk.to(images.device)])
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


@torch.no_grad()
def _predict_labels(
    model: nn.Module, images: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Returns the argmax class index of each image, model in eval mode."""
    model.eval()
    outputs = [
        model(images[start : start + batch_size]).argmax(dim=1).cpu()
        for start in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(outputs)


def _side_summary(
    samples: Sequence[Sample], indices: Sequence[int], keys: Sequence[str]
) -> dict[str, Any]:
    """Counts studies and images, per label, on one side of the split."""
    images = Counter(samples[i].label for i in indices)
    studies: Counter[str] = Counter()
    for key in keys:
        studies.update(
            {samples[i].label for i in indices if samples[i].study_key == key}
        )
    return {
        "studies": len(keys),
        "images": len(indices),
        "images_per_label": dict(sorted(images.items())),
        "studies_per_label": dict(sorted(studies.items())),
    }


def _metrics(
    predicted: torch.Tensor, truth: torch.Tensor, labels: Sequence[str], prefix: str
) -> dict[str, float]:
    """Accuracy, balanced accuracy and per-label recall of one side."""
    correct = predicted == truth
    metrics = {f"{prefix}_accuracy": round(float(correct.float().mean()), 6)}
    recalls = []
    for index, label in enumerate(labels):
        mask = truth == index
        if bool(mask.any()):
            recall = float(correct[mask].float().mean())
            recalls.append(recall)
            metrics[f"{prefix}_recall.{label}"] = round(recall, 6)
    metrics[f"{prefix}_balanced_accuracy"] = round(sum(recalls) / len(recalls), 6)
    return metrics


def train_reference(
    samples: Sequence[Sample],
    *,
    epochs: int = 12,
    image_size: int = 64,
    seed: int = 0,
    eval_fraction: float = 0.25,
    device: str | torch.device = "cpu",
    labels: Sequence[str] = REFERENCE_LABELS,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    augment: bool = True,
    name: str = "reference",
    version: str = "1",
    label_power: float | None = 0.5,
    label_smoothing: float = 0.1,
    weight_decay: float = 0.05,
    num_threads: int | None = 1,
) -> TrainResult:
    """Trains the reference classifier from scratch, split by study.

    Training images are drawn with replacement, balanced by label and by study
    (see `label_power`), so neither a study of a hundred slices nor a common
    label crowds out the rest; the loss is not weighted. On CPU the result is
    deterministic for a given seed, input order, thread count and torch build:
    the same samples give the same weights, sha256 and card.

    Args:
        samples: Prepared images with their label and study key.
        epochs: Passes over the training side; each draws as many images as
            the training side holds.
        image_size: Height and width of every image (checked).
        seed: Seeds the split, the initialization, the draws and the
            augmentation.
        eval_fraction: Share of studies held out for evaluation.
        device: Where to train; see `resolve_device`.
        labels: Output labels in logit order; every sample's label must be one.
        batch_size: Images per optimizer step.
        learning_rate: Peak learning rate of the one-cycle schedule.
        augment: Random flips, zooms, rotations, shifts and intensity changes
            of the training images.
        name: The card's model name.
        version: The card's model version.
        label_power: Each label is drawn in proportion to its number of
            training studies raised to this power (0: all labels equally
            often, 1: by study count); its studies are drawn equally often.
            None draws every image equally often instead.
        label_smoothing: Label smoothing of the cross-entropy loss.
        weight_decay: Decoupled weight decay of AdamW.
        num_threads: CPU threads while training, restored after; None keeps
            torch's setting. A fixed count keeps results the same across
            machines, and one thread is the fastest on a busy machine.

    Returns:
        The weights, the card (its `sha256` is that of `save_weights`' file)
        and the held-out metrics.

    Raises:
        ValueError: Bad arguments, samples that do not fit, or studies that
            cannot be split (see `split_studies`).
    """
    if epochs < 1 or batch_size < 2:
        raise ValueError(
            f"epochs must be >= 1 and batch_size >= 2, got {epochs} and {batch_size}"
        )
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be positive, got {num_threads}")
    _check_samples(samples, labels, image_size)
    study_labels: dict[str, set[str]] = {}
    for sample in samples:
        study_labels.setdefault(sample.study_key, set()).add(sample.label)
    train_keys, eval_keys = split_studies(study_labels, eval_fraction, seed)
    eval_set = set(eval_keys)
    train_idx = [i for i, s in enumerate(samples) if s.study_key not in eval_set]
    eval_idx = [i for i, s in enumerate(samples) if s.study_key in eval_set]
    if len(train_idx) < 2:
        raise ValueError(
            f"the training side holds {len(train_idx)} image(s); BatchNorm needs "
            "at least 2, add samples"
        )

    target = resolve_device(device)
    label_index = {label: i for i, label in enumerate(labels)}
    images = torch.from_numpy(
        np.stack([np.asarray(s.image, dtype=np.float32) for s in samples])[:, None]
    )
    truth = torch.tensor([label_index[s.label] for s in samples])
    draw_weights = _draw_weights(
        [label_index[samples[i].label] for i in train_idx],
        [samples[i].study_key for i in train_idx],
        label_power,
    )
    logger.info(
        "training %s on %s: %d train images (%d studies), %d eval images "
        "(%d studies), %d epochs",
        REFERENCE_ARCHITECTURE,
        target,
        len(train_idx),
        len(train_keys),
        len(eval_idx),
        len(eval_keys),
        epochs,
    )
    started = time.monotonic()

    with _deterministic(seed, target, num_threads):
        model = get_builder(REFERENCE_ARCHITECTURE)(
            num_classes=len(labels), in_channels=1
        ).to(target)
        train_x = images[train_idx].to(target)
        train_y = truth[train_idx].to(target)
        generator = torch.Generator().manual_seed(seed)
        _fit(
            model,
            train_x,
            train_y,
            draw_weights,
            generator,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            augment=augment,
            label_smoothing=label_smoothing,
            weight_decay=weight_decay,
        )
        _recalibrate_batchnorm(model, train_x, batch_size, generator)
        eval_pred = _predict_labels(model, images[eval_idx].to(target), batch_size)
        train_pred = _predict_labels(model, train_x, batch_size)

    metrics = _metrics(eval_pred, truth[eval_idx], labels, "eval")
    metrics.update(_metrics(train_pred, truth[train_idx], labels, "train"))
    state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    split = {
        "method": "by_study",
        "seed": seed,
        "eval_fraction": eval_fraction,
        "train": _side_summary(samples, train_idx, train_keys),
        "eval": {
            **_side_summary(samples, eval_idx, eval_keys),
            "study_keys": eval_keys,
        },
    }
    card = ModelCard(
        name=name,
        version=version,
        architecture=REFERENCE_ARCHITECTURE,
        sha256=hashlib.sha256(serialize_weights(state_dict)).hexdigest(),
        labels=list(labels),
        input=reference_input_spec(image_size),
        metrics=metrics,
        split=split,
        description=(
            "Series-type classifier (axial CT, CT localizer, MR, radiograph, "
            "other) trained from scratch on labels derived from DICOM headers."
        ),
        intended_use=REFERENCE_INTENDED_USE,
        created_by=f"medray models.train.train_reference (torch {torch.__version__})",
    )
    logger.info(
        "trained %s/%s in %.1f s: eval accuracy %.3f, sha256 %s",
        name,
        version,
        time.monotonic() - started,
        metrics["eval_accuracy"],
        card.sha256[:12],
    )
    return TrainResult(state_dict=state_dict, card=card, metrics=dict(metrics))


def _fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    draw_weights: torch.Tensor,
    generator: torch.Generator,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    augment: bool,
    label_smoothing: float,
    weight_decay: float,
) -> None:
    """Runs AdamW with a one-cycle schedule over balanced draws of the
    training images."""
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    steps = epochs * _batch_count(x.shape[0], batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate, weight_decay=weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=learning_rate, total_steps=max(steps, 1)
    )

    model.train()
    for epoch in range(epochs):
        total = 0.0
        batches = _batches(draw_weights, batch_size, generator)
        for batch in batches:
            index = batch.to(x.device)
            inputs = x[index]
            if augment:
                inputs = _augment(inputs.cpu(), generator).to(x.device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), y[index])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        logger.debug(
            "epoch %d/%d: mean loss %.4f", epoch + 1, epochs, total / len(batches)
        )
