"""Reference labels, the study split and reference training."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models import (
    REFERENCE_LABELS,
    Sample,
    TrainResult,
    load_model,
    predict_batch,
    reference_label,
    save_weights,
    split_studies,
    train_reference,
)
from models.train import _augment, _draw_weights, _recalibrate_batchnorm

SIZE = 32
LABELS = ["top", "left", "square", "dark"]


@pytest.mark.parametrize(
    ("modality", "image_type", "is_volume", "expected"),
    [
        ("CT", ["ORIGINAL", "PRIMARY", "AXIAL"], True, "ct_axial"),
        ("CT", ["ORIGINAL", "PRIMARY", "LOCALIZER"], False, "ct_localizer"),
        ("ct", "ORIGINAL\\PRIMARY\\localizer", False, "ct_localizer"),
        ("CT", ["ORIGINAL", "PRIMARY", "TOPOGRAM"], False, "ct_localizer"),
        ("CT", [], False, "ct_axial"),
        ("MR", ["ORIGINAL", "PRIMARY"], True, "mr"),
        ("MR", [], False, "mr"),
        ("CR", [], False, "radiograph"),
        ("DX", ["ORIGINAL", "PRIMARY"], False, "radiograph"),
        (" MG ", [], False, "radiograph"),
        ("XA", [], False, "radiograph"),
        ("XA", [], True, "other"),
        ("US", [], False, "other"),
        ("SR", [], False, "other"),
        (None, [], False, "other"),
        ("", ["LOCALIZER"], False, "other"),
    ],
)
def test_reference_label_rules(
    modality: str | None, image_type: list[str] | str, is_volume: bool, expected: str
) -> None:
    label = reference_label(modality, image_type, is_volume=is_volume)

    assert label == expected
    assert label in REFERENCE_LABELS


def _assert_valid_split(
    study_labels: dict[str, set[str]], train: list[str], held: list[str]
) -> None:
    assert not set(train) & set(held)
    assert sorted(train + held) == sorted(study_labels)
    for label in {label for labels in study_labels.values() for label in labels}:
        holders = [k for k, labels in study_labels.items() if label in labels]
        assert any(k in train for k in holders), f"{label} missing from training"
        if len(holders) >= 2:
            assert any(k in held for k in holders), f"{label} missing from eval"


def test_split_is_deterministic_and_covers_labels() -> None:
    study_labels = {f"s{i:02d}": {LABELS[i % 4]} for i in range(20)}
    study_labels["s99"] = {"rare"}
    study_labels["s98"] = {"rare", "top"}

    train, held = split_studies(study_labels, 0.25, seed=3)

    assert (train, held) == split_studies(study_labels, 0.25, seed=3)
    assert len(held) == round(22 * 0.25)
    _assert_valid_split(study_labels, train, held)


def test_split_depends_on_seed() -> None:
    study_labels = {f"s{i:02d}": {LABELS[i % 4]} for i in range(40)}

    splits = {tuple(split_studies(study_labels, 0.25, seed)[1]) for seed in range(5)}

    assert len(splits) > 1


def test_split_keeps_a_single_study_label_in_training() -> None:
    study_labels = {"a": {"x"}, "b": {"x"}, "c": {"y"}}

    train, held = split_studies(study_labels, 0.5, seed=0)

    assert "c" in train
    _assert_valid_split(study_labels, train, held)


@pytest.mark.parametrize(
    ("study_labels", "fraction", "message"),
    [
        ({"a": {"x"}}, 0.25, "at least 2 studies"),
        ({"a": {"x"}, "b": {"x"}}, 0.0, "eval_fraction"),
        ({"a": {"x"}, "b": {"x"}}, 1.0, "eval_fraction"),
        ({"a": {"x"}, "b": {"y"}}, 0.5, "no study can be held out"),
    ],
)
def test_split_refuses_impossible_requests(
    study_labels: dict[str, set[str]], fraction: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        split_studies(study_labels, fraction, seed=0)


def _image(label: str, rng: np.random.Generator) -> np.ndarray:
    """Obviously different synthetic images per label, with noise."""
    image = rng.normal(0.0, 0.3, (SIZE, SIZE)).astype(np.float32)
    half, quarter = SIZE // 2, SIZE // 4
    if label == "top":
        image[:half] += 2.0
    elif label == "left":
        image[:, :half] += 2.0
    elif label == "square":
        image[quarter:-quarter, quarter:-quarter] += 2.0
    else:
        image -= 1.5
    return image


def _samples(images_per_study: int = 6) -> list[Sample]:
    """Eight studies, two per label."""
    rng = np.random.default_rng(0)
    return [
        Sample(_image(label, rng), label, f"study{study}-{label}")
        for study in range(2)
        for label in LABELS
        for _ in range(images_per_study)
    ]


def _train(seed: int = 0) -> TrainResult:
    return train_reference(
        _samples(),
        epochs=6,
        image_size=SIZE,
        seed=seed,
        eval_fraction=0.5,
        labels=LABELS,
        batch_size=8,
    )


@pytest.fixture(scope="module")
def trained() -> TrainResult:
    return _train()


def test_training_learns_above_chance(trained: TrainResult) -> None:
    assert trained.metrics["eval_accuracy"] > 0.5
    assert trained.metrics == trained.card.metrics


def test_training_split_has_no_study_on_both_sides(trained: TrainResult) -> None:
    split = trained.card.split
    held = set(split["eval"]["study_keys"])
    train_keys = {s.study_key for s in _samples()} - held

    assert split["method"] == "by_study"
    assert held and train_keys
    assert split["eval"]["studies"] == len(held) == 4
    assert split["train"]["studies"] == len(train_keys) == 4
    assert split["eval"]["images_per_label"] == {label: 6 for label in LABELS}
    assert split["eval"]["studies_per_label"] == {label: 1 for label in LABELS}


def test_card_describes_the_weights(trained: TrainResult, tmp_path: Path) -> None:
    card = trained.card
    path = tmp_path / "weights.safetensors"

    digest = save_weights(trained.state_dict, path)

    assert digest == card.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card.architecture == "resnet18_1ch"
    assert card.labels == LABELS
    assert card.input["size"] == [SIZE, SIZE]
    assert card.intended_use == "demonstration only, not for clinical use"


def test_saved_model_reproduces_held_out_accuracy(
    trained: TrainResult, tmp_path: Path
) -> None:
    path = tmp_path / "weights.safetensors"
    save_weights(trained.state_dict, path)
    held = set(trained.card.split["eval"]["study_keys"])
    eval_samples = [s for s in _samples() if s.study_key in held]
    x = np.stack([s.image for s in eval_samples])[:, None]

    probs = predict_batch(load_model(trained.card, path), x)

    hits = [
        LABELS[i] == s.label for i, s in zip(probs.argmax(1), eval_samples, strict=True)
    ]
    assert np.mean(hits) == pytest.approx(trained.metrics["eval_accuracy"], abs=1e-6)


def test_training_is_deterministic_on_cpu(trained: TrainResult) -> None:
    assert _train().card.to_json() == trained.card.to_json()


def test_training_rejects_misfit_samples() -> None:
    good = _samples(images_per_study=1)
    wrong_size = [*good, Sample(np.zeros((8, 8), np.float32), "top", "study9")]
    wrong_label = [*good, Sample(good[0].image, "mr", "study9")]

    with pytest.raises(ValueError, match="expected \\(32, 32\\)"):
        train_reference(wrong_size, image_size=SIZE, labels=LABELS)
    with pytest.raises(ValueError, match="label 'mr'"):
        train_reference(wrong_label, image_size=SIZE, labels=LABELS)
    with pytest.raises(ValueError, match="no samples"):
        train_reference([], image_size=SIZE, labels=LABELS)


def test_training_restores_the_thread_count() -> None:
    before = torch.get_num_threads()

    train_reference(
        _samples(images_per_study=2),
        epochs=1,
        image_size=SIZE,
        eval_fraction=0.5,
        labels=LABELS,
        batch_size=4,
        num_threads=1,
    )

    assert torch.get_num_threads() == before


def test_draws_weigh_studies_not_images() -> None:
    labels = [0] * 100 + [0] + [1] * 3
    studies = ["big"] * 100 + ["one"] + ["x1", "x2", "x3"]

    by_study = _draw_weights(labels, studies, label_power=0.0)
    by_count = _draw_weights(labels, studies, label_power=1.0)
    plain = _draw_weights(labels, studies, label_power=None)

    assert float(by_study.sum()) == pytest.approx(1.0)
    assert float(by_study[:100].sum()) == pytest.approx(float(by_study[100]))
    assert float(by_study[:101].sum()) == pytest.approx(0.5)
    assert float(by_count[:101].sum()) == pytest.approx(2 / 5)
    assert torch.allclose(plain, torch.full((104,), 1 / 104, dtype=torch.float64))


def test_augmentation_is_seeded_and_adds_no_grey_frame() -> None:
    black = torch.full((16, 1, SIZE, SIZE), -2.0)

    first = _augment(black, torch.Generator().manual_seed(1))
    again = _augment(black, torch.Generator().manual_seed(1))

    assert first.shape == black.shape
    assert torch.equal(first, again)
    assert float(first.max()) < -1.5
    assert float(first.min()) >= -2.0


def test_recalibration_mixes_batches() -> None:
    model = nn.Sequential(nn.BatchNorm2d(1))
    dark = torch.full((32, 1, 4, 4), -1.0)
    bright = torch.full((32, 1, 4, 4), 1.0)

    _recalibrate_batchnorm(
        model, torch.cat([dark, bright]), 8, torch.Generator().manual_seed(0)
    )

    norm = model[0]
    assert isinstance(norm, nn.BatchNorm2d)
    assert norm.running_var is not None
    assert not model.training
    assert float(norm.running_var[0]) > 0.5
