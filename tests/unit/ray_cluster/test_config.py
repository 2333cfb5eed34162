"""Settings precedence, strictness and secrecy; errors survive pickling."""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path

import pytest

from ray_cluster import errors
from ray_cluster.config import Secret, Settings, StorageSettings, load_settings
from ray_cluster.errors import ClusterError, ConfigError


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "medray.yaml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    settings = load_settings(env={})
    assert settings.storage.endpoint is None
    assert settings.storage.threads == 8


def test_precedence_flags_env_yaml_defaults(tmp_path: Path) -> None:
    config = _yaml(
        tmp_path,
        "storage:\n  threads: 3\n  region: yaml-region\n  endpoint: http://yaml:1\n",
    )
    env = {"MEDRAY_STORAGE__THREADS": "5", "MEDRAY_STORAGE__ENDPOINT": "http://env:1"}
    overrides = {"storage": {"threads": 7, "endpoint": None}}
    settings = load_settings(config, overrides=overrides, env=env)
    assert settings.storage.threads == 7  # flag beats env and yaml
    assert settings.storage.endpoint == "http://env:1"  # None flag is ignored
    assert settings.storage.region == "yaml-region"  # yaml beats default
    assert settings.storage.verify_tls is True  # default
    assert load_settings(config, env=env).storage.threads == 5


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("storage:\n  endpiont: http://x:1\n", {}),
        ("storrage:\n  endpoint: http://x:1\n", {}),
        ("", {"MEDRAY_STORAGE__NOPE": "1"}),
        ("", {"MEDRAY_NOSECTION__X": "1"}),
    ],
)
def test_unknown_keys_rejected(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="invalid settings"):
        load_settings(_yaml(tmp_path, text), env=env)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(_yaml(tmp_path, "storage: [\n"), env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml", env={})


def test_secrets_never_printed(tmp_path: Path) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AKIDPLAIN",
        "MEDRAY_STORAGE__SECRET_KEY": "S3CRETPLAIN",
    }
    settings = load_settings(env=env)
    assert isinstance(settings.storage.secret_key, Secret)
    shown = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        json.dumps(settings.public_dict()),
        repr(settings.storage),
    ]
    for text in shown:
        assert "AKIDPLAIN" not in text and "S3CRETPLAIN" not in text
    stripped = settings.without_secrets()
    assert stripped.storage.access_key is None and stripped.storage.secret_key is None


def test_settings_frozen() -> None:
    settings = Settings(storage=StorageSettings(threads=2))
    with pytest.raises(ValueError):
        settings.storage.threads = 3  # type: ignore[misc]


def _error_classes() -> list[type[ClusterError]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, ClusterError)
    ]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_errors_pickle_round_trip(cls: type[ClusterError]) -> None:
    error = cls(
        "s3://studies/ab12/3.dcm: no such object", key="s3://studies/ab12/3.dcm"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error) == "s3://studies/ab12/3.dcm: no such object"
    assert copy.key == error.key and copy.message == error.message
