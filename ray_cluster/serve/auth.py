"""API keys of the HTTP service: where they come from and how a request is checked.

Keys are read on the node that runs the ingress replica, never passed as
deployment arguments: from ``serve.api_key_file`` (one key per line, ``#``
comments), from the environment variable ``MEDRAY_SERVE__API_KEYS`` (a JSON list
or comma-separated), and from ``serve.api_keys`` when the settings still hold
them (the driver process). A request names its key in ``Authorization: Bearer
<key>`` or ``X-API-Key: <key>``; the comparison takes the same time whichever
key, and however much of it, matches.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path

from ray_cluster.config import ServeSettings
from ray_cluster.errors import ConfigError

__all__ = ["ENV_API_KEYS", "ApiKeys", "KeyCheck", "parse_key_list", "presented_key"]

logger = logging.getLogger(__name__)

ENV_API_KEYS = "MEDRAY_SERVE__API_KEYS"
MIN_KEY_LENGTH = 16


class KeyCheck(Enum):
    """Outcome of checking a request's key."""

    OK = "ok"
    MISSING = "missing"
    WRONG = "wrong"


def parse_key_list(text: str) -> list[str]:
    """Split a list of keys given as JSON (``["a", "b"]``) or ``a,b``."""
    text = text.strip()
    if text.startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(
                f"{ENV_API_KEYS} starts with '[' but is not a JSON list of strings",
                key="serve.api_keys",
            ) from None
        if not isinstance(loaded, list) or not all(isinstance(k, str) for k in loaded):
            raise ConfigError(
                f"{ENV_API_KEYS} must be a JSON list of strings", key="serve.api_keys"
            )
        return [k.strip() for k in loaded if k.strip()]
    return [k.strip() for k in text.split(",") if k.strip()]


def _read_key_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the API key file {path}: {exc.strerror}; it must exist "
            "on every node that runs the ingress",
            key="serve.api_key_file",
        ) from None
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(line)
    return keys


class ApiKeys:
    """The accepted API keys, checked in constant time.

    Args:
        keys: Accepted keys.

    Raises:
        ConfigError: A key is shorter than 16 characters.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        unique = sorted({k for k in keys if k})
        short = [k for k in unique if len(k) < MIN_KEY_LENGTH]
        if short:
            raise ConfigError(
                f"{len(short)} API key(s) are shorter than {MIN_KEY_LENGTH} "
                "characters; generate keys with `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`",
                key="serve.api_keys",
            )
        self._keys = [k.encode("utf-8") for k in unique]

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._keys)} keys)"

    @classmethod
    def load(
        cls, serve: ServeSettings, env: Mapping[str, str] | None = None
    ) -> ApiKeys:
        """Gather the keys visible on this node.

        Args:
            serve: Serve settings (``api_keys`` may have been removed).
            env: Environment to read; defaults to ``os.environ``.

        Returns:
            Every key from the settings, the key file and the environment.

        Raises:
            ConfigError: The key file is unreadable, the variable malformed, or
                no key is configured anywhere.
        """
        env = os.environ if env is None else env
        keys = [k.get_secret_value() for k in serve.api_keys]
        if serve.api_key_file is not None:
            keys.extend(_read_key_file(serve.api_key_file))
        if env.get(ENV_API_KEYS):
            keys.extend(parse_key_list(env[ENV_API_KEYS]))
        if not keys:
            raise ConfigError(
                "no API key configured: put keys in serve.api_key_file (one per "
                f"line) or {ENV_API_KEYS} on every node that runs the ingress",
                key="serve.api_keys",
            )
        return cls(keys)

    def check(self, given: str | None) -> KeyCheck:
        """Check a presented key against every accepted key.

        Every accepted key is compared, so the time taken does not tell which
        key (or which prefix of one) matched.
        """
        if not given:
            return KeyCheck.MISSING
        presented = given.encode("utf-8")
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(presented, key)
        return KeyCheck.OK if found else KeyCheck.WRONG


def presented_key(headers: Mapping[str, str]) -> str | None:
    """Return the key of a request from ``Authorization`` or ``X-API-Key``.

    Args:
        headers: Request headers, lower-case names.
    """
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None
