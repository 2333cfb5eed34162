"""Probabilities, combination, rounding and device choice."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from torch import nn

from models import combine, predict_batch, resolve_device, round_probs, top_label


def _inputs(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, 32, 32)).astype(np.float32)


def test_probabilities_have_shape_and_sum_to_one(
    tiny_model: nn.Module, device: str
) -> None:
    probs = predict_batch(tiny_model, _inputs(), device=device)

    assert probs.shape == (5, 3)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_recomputed_results_are_byte_identical(
    tiny_model: nn.Module, device: str
) -> None:
    def result() -> bytes:
        probs = predict_batch(tiny_model, _inputs(), device=device)
        series = combine(probs, "mean")
        body = {
            "probs": round_probs(probs).tolist(),
            "series": round_probs(series).tolist(),
        }
        return json.dumps(body, sort_keys=True).encode()

    assert result() == result()


def test_chunking_does_not_change_rounded_results(tiny_model: nn.Module) -> None:
    whole = predict_batch(tiny_model, _inputs(), batch_size=64)
    chunked = predict_batch(tiny_model, _inputs(), batch_size=2)

    np.testing.assert_allclose(whole, chunked, atol=1e-5)


def test_training_mode_model_is_refused(tiny_model: nn.Module) -> None:
    tiny_model.train()

    with pytest.raises(ValueError, match="eval"):
        predict_batch(tiny_model, _inputs())


@pytest.mark.parametrize("shape", [(1, 32, 32), (0, 1, 32, 32)])
def test_bad_input_shape_is_refused(
    tiny_model: nn.Module, shape: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        predict_batch(tiny_model, np.zeros(shape, dtype=np.float32))


def test_combine_methods_give_distributions() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])

    np.testing.assert_allclose(combine(probs), [0.4, 0.5, 0.1])
    for how in ("mean", "max", "geometric_mean"):
        result = combine(probs, how)
        assert result.shape == (3,)
        assert result.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(combine(probs, "max"), np.array([0.7, 0.8, 0.1]) / 1.6)


def test_combine_rejects_unknown_method_and_empty_input() -> None:
    with pytest.raises(ValueError, match="unknown combine method 'median'"):
        combine(np.ones((2, 3)) / 3, "median")
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        combine(np.zeros((0, 3)))


def test_top_label_picks_first_on_ties() -> None:
    assert top_label(np.array([0.1, 0.6, 0.3]), ["a", "b", "c"]) == ("b", 0.6)
    assert top_label(np.array([0.5, 0.5]), ["a", "b"])[0] == "a"
    with pytest.raises(ValueError, match="expected 2 probabilities"):
        top_label(np.array([1.0]), ["a", "b"])


def test_round_probs_rounds_and_clears_negative_zero() -> None:
    rounded = round_probs(np.array([0.12345678, -0.0, 1 / 3]))

    assert rounded.tolist() == [0.123457, 0.0, 0.333333]
    assert json.dumps(rounded.tolist()) == "[0.123457, 0.0, 0.333333]"


def test_resolve_device_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_resolve_device_warns_on_cpu_fallback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    with caplog.at_level(logging.WARNING, logger="models.predict"):
        device = resolve_device("cuda")

    assert device == torch.device("cpu")
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_resolve_device_auto_does_not_warn_without_cuda(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    with caplog.at_level(logging.DEBUG, logger="models.predict"):
        assert resolve_device("auto") == torch.device("cpu")

    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_resolve_device_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
