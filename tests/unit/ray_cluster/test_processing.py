"""prepare_study / finish_study: deterministic, versioned results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models import (
    ModelCard,
    get_builder,
    load_model,
    reference_input_spec,
    save_weights,
    sha256_file,
)
from pipelines import study_key
from ray_cluster.demo import write_phantom_ct
from ray_cluster.processing import (
    RESULT_SCHEMA_VERSION,
    dumps_result,
    error_result,
    finish_study,
    predict_study_images,
    prepare_study,
    result_key,
)
from ray_cluster.sources import read_local_studies

LABELS = ["ct_axial", "ct_localizer", "mr", "radiograph", "other"]


@pytest.fixture(scope="module")
def model_and_card(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[torch.nn.Module, ModelCard]:
    torch.manual_seed(0)
    net = get_builder("resnet18_1ch")(num_classes=len(LABELS), in_channels=1)
    path = tmp_path_factory.mktemp("m") / "w.safetensors"
    save_weights(net.state_dict(), path)
    spec = reference_input_spec(32)
    card = ModelCard(
        name="t",
        version="1",
        architecture="resnet18_1ch",
        sha256=sha256_file(path),
        labels=LABELS,
        input=spec,
        metrics={},
        split={},
    )
    return load_model(card, path), card


@pytest.fixture(scope="module")
def phantom(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, list[tuple[str, bytes]]]:
    folder = tmp_path_factory.mktemp("phantom")
    uid = write_phantom_ct(folder, slices=6, size=32)
    found = read_local_studies(folder)
    return uid, found.studies[uid]


def _result(
    model: torch.nn.Module, card: ModelCard, uid: str, objects: list[tuple[str, bytes]]
) -> bytes:
    prepared = prepare_study(uid, objects, card)
    probs = [
        None if s.inputs is None else predict_study_images(model, s.inputs, "cpu")
        for s in prepared.series
    ]
    return dumps_result(finish_study(prepared, probs, card))


def test_result_schema_and_determinism(model_and_card, phantom) -> None:
    model, card = model_and_card
    uid, objects = phantom
    first = _result(model, card, uid, objects)
    again = _result(model, card, uid, list(reversed(objects)))
    assert first == again
    result = json.loads(first)
    assert result["schema_version"] == RESULT_SCHEMA_VERSION
    assert result["study_key"] == study_key(uid)
    assert result["model"] == {"name": "t", "version": "1", "sha256": card.sha256}
    assert result["error"] is None
    kinds = sorted(s["kind"] for s in result["series"])
    assert kinds == ["2d", "volume"]
    volume = next(s for s in result["series"] if s["kind"] == "volume")
    assert volume["shape"][-3:] == [6, 32, 32]
    assert volume["spacing_mm"][2] == pytest.approx(2.5)
    assert sum(volume["output"]["probabilities"].values()) == pytest.approx(
        1.0, abs=1e-4
    )
    assert "Synthetic" not in first.decode()


def test_padded_forward_does_not_depend_on_neighbours(model_and_card) -> None:
    model, _ = model_and_card
    images = (
        np.random.default_rng(0).standard_normal((11, 1, 32, 32)).astype(np.float32)
    )
    together = predict_study_images(model, images, "cpu")
    alone = predict_study_images(model, images[3:4], "cpu")
    assert together[3].tobytes() == alone[0].tobytes()


def test_error_result_and_key(model_and_card) -> None:
    _, card = model_and_card
    result = error_result("1.2.3", card, "quarantined", "set aside", None)
    assert result["error"]["code"] == "quarantined"
    key = result_key("medray-results/", card, study_key("1.2.3"))
    assert key == f"medray-results/t/{card.sha256[:12]}/{study_key('1.2.3')}.json"
