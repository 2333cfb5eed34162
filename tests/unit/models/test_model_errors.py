"""The model error tree: relations, messages and pickling."""

from __future__ import annotations

import pickle

import pytest

from models.errors import CardError, ModelError, UnknownModelError, WeightsChecksumError

ERRORS = [
    ModelError("weights unreadable", name="tiny"),
    UnknownModelError(
        "unknown architecture 'x'", name="x", known=("resnet18_1ch", "other")
    ),
    WeightsChecksumError(
        "weights file w.safetensors has sha256 aaa, expected bbb",
        name="tiny",
        path="w.safetensors",
        expected="b" * 64,
        actual="a" * 64,
    ),
    CardError("invalid model card: labels", name="tiny", field="labels"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_pickle_round_trip_keeps_type_message_and_context(error: ModelError) -> None:
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert str(copy) == str(error) == error.message
    assert copy.args == error.args
    assert copy.__dict__ == error.__dict__


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_is_a_model_error(error: ModelError) -> None:
    assert isinstance(error, ModelError)


def test_builtin_bases_let_callers_catch_familiar_types() -> None:
    assert issubclass(UnknownModelError, KeyError)
    assert issubclass(UnknownModelError, ValueError)
    assert issubclass(CardError, ValueError)
    assert not issubclass(WeightsChecksumError, ValueError)


def test_unknown_model_error_str_is_not_quoted_like_key_error() -> None:
    error = UnknownModelError("unknown architecture 'x'", name="x")

    assert str(error) == "unknown architecture 'x'"


def test_context_defaults_to_none() -> None:
    error = WeightsChecksumError("bad")

    assert (error.name, error.path, error.expected, error.actual) == (
        None,
        None,
        None,
        None,
    )
