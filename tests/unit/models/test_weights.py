"""Model cards and weights files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pydantic
import pytest
import torch

from models import (
    CardError,
    ModelCard,
    ModelError,
    WeightsChecksumError,
    load_weights,
    save_weights,
    serialize_weights,
    sha256_file,
)

CardFactory = Callable[..., ModelCard]


def test_card_json_round_trip(make_card: CardFactory) -> None:
    card = make_card()

    text = card.to_json()

    assert ModelCard.from_json(text) == card
    assert ModelCard.from_json(text.encode()).to_json() == text


def test_card_json_is_deterministic_with_sorted_keys(make_card: CardFactory) -> None:
    card = make_card(metrics={"z": 1.0, "a": 0.5})

    text = card.to_json()

    assert text == make_card(metrics={"a": 0.5, "z": 1.0}).to_json()
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert list(json.loads(text)["metrics"]) == ["a", "z"]
    assert text.endswith("}\n")


def test_card_defaults_schema_version(make_card: CardFactory) -> None:
    assert make_card().schema_version == 1


def test_card_rejects_unknown_top_level_key(make_card: CardFactory) -> None:
    data = json.loads(make_card().to_json())
    data["weights_url"] = "s3://x"

    with pytest.raises(CardError, match="weights_url") as info:
        ModelCard.from_json(json.dumps(data))
    assert info.value.field == "weights_url"


def test_card_rejects_unknown_key_in_input_block(make_card: CardFactory) -> None:
    data = json.loads(make_card().to_json())
    data["input"]["volume"]["slabs"] = 3

    with pytest.raises(CardError, match="slabs"):
        ModelCard.from_json(json.dumps(data))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sha256", "xyz"),
        ("labels", []),
        ("labels", ["a", "a"]),
        ("name", "Has Spaces"),
        ("schema_version", 2),
        ("metrics", {"eval_accuracy": float("nan")}),
    ],
)
def test_card_rejects_bad_values(
    make_card: CardFactory, field: str, value: object
) -> None:
    data = json.loads(make_card().to_json())
    data[field] = value

    with pytest.raises(CardError, match=field):
        ModelCard.from_json(json.dumps(data))


def test_card_rejects_non_json() -> None:
    with pytest.raises(CardError, match="invalid model card"):
        ModelCard.from_json("{not json")


def test_card_input_accepts_window_and_rejects_bad_percentiles(
    make_card: CardFactory,
) -> None:
    spec = make_card().input
    window = {**spec, "intensity": {"mode": "window", "center": 40, "width": 400}}

    assert make_card(input=window).input["intensity"]["width"] == 400.0

    with pytest.raises(pydantic.ValidationError, match="below high"):
        make_card(
            input={**spec, "intensity": {"mode": "percentile", "low": 99, "high": 1}}
        )


def test_card_is_frozen(make_card: CardFactory) -> None:
    card = make_card()

    with pytest.raises(pydantic.ValidationError):
        card.name = "other"  # type: ignore[misc]


def _state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 1, 3, 3, generator=generator),
        "fc.bias": torch.zeros(3),
        "bn.num_batches_tracked": torch.tensor(7),
    }


def test_save_and_load_weights_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"

    digest = save_weights(_state(), path)
    loaded = load_weights(path, digest)

    assert digest == sha256_file(path)
    assert loaded.keys() == _state().keys()
    for name, tensor in _state().items():
        assert torch.equal(loaded[name], tensor)
        assert loaded[name].dtype == tensor.dtype


def test_saved_bytes_are_deterministic_and_no_temp_file_remains(tmp_path: Path) -> None:
    first = save_weights(_state(), tmp_path / "a.safetensors")
    second = save_weights(_state(), tmp_path / "b.safetensors")

    assert first == second
    assert (tmp_path / "a.safetensors").read_bytes() == serialize_weights(_state())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.safetensors",
        "b.safetensors",
    ]


def test_tampered_file_raises_checksum_error(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    digest = save_weights(_state(), path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(WeightsChecksumError) as info:
        load_weights(path, digest)

    error = info.value
    assert error.expected == digest
    assert error.actual == sha256_file(path)
    assert str(path) in str(error)
    assert digest[:12] in str(error)
    assert sha256_file(path)[:12] in str(error)


def test_wrong_expected_hash_raises_checksum_error(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(_state(), path)

    with pytest.raises(WeightsChecksumError):
        load_weights(path, "f" * 64)


def test_matching_hash_of_garbage_raises_model_error(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"not a safetensors file")

    with pytest.raises(ModelError, match="not a readable safetensors"):
        load_weights(path, sha256_file(path))


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "absent.safetensors", "0" * 64)
