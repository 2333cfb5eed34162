"""Errors raised by the cluster layer.

```
ClusterError
├── ConfigError (ValueError)      bad settings, flags or config file
├── StorageError                  object storage unreachable or refused
│   └── ObjectNotFoundError (KeyError)
├── CatalogError                  catalog missing, unreadable or stale
├── JobError                      a batch job could not start or finish
└── ServeError                    the HTTP application could not start
```

Every error takes its message first and its context as defaulted keywords, so it
survives the pickle round trip between Ray processes. Messages name the object
(bucket/key, study key, config key); they never carry patient data.
"""

from __future__ import annotations

__all__ = [
    "CatalogError",
    "ClusterError",
    "ConfigError",
    "JobError",
    "ObjectNotFoundError",
    "ServeError",
    "StorageError",
]


class ClusterError(Exception):
    """Base of every error raised by `ray_cluster`."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(
    cls: type[ClusterError], message: str, state: dict[str, object]
) -> ClusterError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ConfigError(ClusterError, ValueError):
    """Settings, flags or a config file are invalid; exit code 2 in the CLI."""


class StorageError(ClusterError):
    """The object store could not be reached or refused a request."""


class ObjectNotFoundError(StorageError, KeyError):
    """The named object does not exist."""

    def __str__(self) -> str:
        return self.message


class CatalogError(ClusterError):
    """The catalog of a prefix is missing or unreadable."""


class JobError(ClusterError):
    """A batch job could not start or finish."""


class ServeError(ClusterError):
    """The HTTP diagnosis application could not start."""
