"""Errors raised by the model layer.

```
ModelError
├── UnknownModelError (KeyError, ValueError)   no builder registered under a name
├── WeightsChecksumError                       weights file does not match its card
└── CardError (ValueError)                     model card invalid or inconsistent
```

Every error takes its message first and its context as defaulted keywords, so it
survives the pickle round trip between Ray processes. Messages name the model,
the architecture or the weights file; they never carry patient data.
"""

from __future__ import annotations

__all__ = [
    "CardError",
    "ModelError",
    "UnknownModelError",
    "WeightsChecksumError",
]


class ModelError(Exception):
    """Base of every error raised by `models`.

    Args:
        message: What went wrong and what to do next.
        name: The model or architecture concerned, when known.
    """

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.name = name

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(
    cls: type[ModelError], message: str, state: dict[str, object]
) -> ModelError:
    """Recreates an error from its message and attributes (used by pickle)."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class UnknownModelError(ModelError, KeyError, ValueError):
    """No builder is registered under the requested architecture name.

    It is a `KeyError` for callers that treat the registry as a mapping and a
    `ValueError` for callers that validate a card or a flag.

    Args:
        message: What went wrong, listing the known architectures.
        name: The requested architecture name.
        known: The registered architecture names at the time of the lookup.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        known: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, name=name)
        self.known = known


class WeightsChecksumError(ModelError):
    """A weights file's sha256 differs from the one its model card records.

    Args:
        message: What went wrong, naming the file and both short hashes.
        name: The model concerned, when known.
        path: The weights file that was checked.
        expected: The full sha256 the card records.
        actual: The full sha256 of the file's bytes.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        path: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        super().__init__(message, name=name)
        self.path = path
        self.expected = expected
        self.actual = actual


class CardError(ModelError, ValueError):
    """A model card is malformed or does not fit its weights.

    Args:
        message: What went wrong, naming the field or the weights file.
        name: The model concerned, when known.
        field: The card field at fault, when one is.
    """

    def __init__(
        self, message: str, *, name: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, name=name)
        self.field = field
