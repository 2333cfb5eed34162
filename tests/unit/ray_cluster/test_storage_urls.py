"""S3 URLs, credential and endpoint resolution, and the client's safe repr."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from ray_cluster import embedded
from ray_cluster.config import Secret, StorageSettings
from ray_cluster.errors import ConfigError, StorageError
from ray_cluster.ingest import UNSORTED, derive_key
from ray_cluster.storage import (
    ObjectStore,
    S3Url,
    resolve_credentials,
    resolve_endpoint,
)


@pytest.mark.parametrize(
    ("text", "bucket", "prefix"),
    [
        ("s3://studies", "studies", ""),
        ("s3://studies/", "studies", ""),
        ("s3://studies/ct/2024", "studies", "ct/2024"),
        ("s3://my.bucket-1/a/b/", "my.bucket-1", "a/b"),
    ],
)
def test_parse_and_format(text: str, bucket: str, prefix: str) -> None:
    url = S3Url.parse(text)
    assert (url.bucket, url.prefix) == (bucket, prefix)
    assert S3Url.parse(str(url)) == url


@pytest.mark.parametrize(
    "text",
    [
        "studies/ct",
        "http://studies/ct",
        "s3://",
        "s3://ab",
        "s3://UPPER/x",
        "s3://under_score",
        "s3://b..x/y",
        "s3://bucket/a//b",
        "s3://bucket/a/../b",
    ],
)
def test_parse_rejects_bad_input(text: str) -> None:
    with pytest.raises(ConfigError, match="s3://"):
        S3Url.parse(text)


def test_key_and_child_join_parts() -> None:
    url = S3Url.parse("s3://b-1/pre")
    assert url.key("x", "y.dcm") == "pre/x/y.dcm"
    assert S3Url("b-1").key("x") == "x"
    assert str(url.child("sub/")) == "s3://b-1/pre/sub"


def _storage(tmp_path: Path, **fields: object) -> StorageSettings:
    return StorageSettings(data_dir=tmp_path, **fields)  # type: ignore[arg-type]


def _plain(pair: tuple[Secret, Secret]) -> tuple[str, str]:
    return pair[0].get_secret_value(), pair[1].get_secret_value()


def test_credentials_order(tmp_path: Path) -> None:
    secret_file = tmp_path / "keys"
    secret_file.write_text("# keys\nACCESS_KEY=file-a\nSECRET_KEY=file-s\n")
    (tmp_path / embedded.CREDENTIALS_FILE).write_text(
        "ACCESS_KEY=emb-a\nSECRET_KEY=emb-s\n"
    )
    env = {
        "MEDRAY_STORAGE__ACCESS_KEY": "env-a",
        "MEDRAY_STORAGE__SECRET_KEY": "env-s",
        "AWS_ACCESS_KEY_ID": "aws-a",
        "AWS_SECRET_ACCESS_KEY": "aws-s",
    }
    full = _storage(
        tmp_path,
        access_key=Secret("set-a"),
        secret_key=Secret("set-s"),
        secret_file=secret_file,
    )
    assert _plain(resolve_credentials(full, env)) == ("set-a", "set-s")
    from_env = _storage(tmp_path, secret_file=secret_file)
    assert _plain(resolve_credentials(from_env, env)) == ("env-a", "env-s")
    aws_only = {k: v for k, v in env.items() if k.startswith("AWS")}
    assert _plain(resolve_credentials(from_env, aws_only)) == ("aws-a", "aws-s")
    assert _plain(resolve_credentials(from_env, {})) == ("file-a", "file-s")
    assert _plain(resolve_credentials(_storage(tmp_path), {})) == ("emb-a", "emb-s")


def test_embedded_keys_unused_with_endpoint(tmp_path: Path) -> None:
    (tmp_path / embedded.CREDENTIALS_FILE).write_text("ACCESS_KEY=a\nSECRET_KEY=s\n")
    storage = _storage(tmp_path, endpoint="https://minio.example:9000")
    with pytest.raises(ConfigError, match="no S3 credentials") as caught:
        resolve_credentials(storage, {})
    assert "store up" not in str(caught.value)


def test_half_a_pair_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only one"):
        resolve_credentials(_storage(tmp_path), {"AWS_ACCESS_KEY_ID": "a"})


def test_unreadable_secret_file_names_setting(tmp_path: Path) -> None:
    storage = _storage(tmp_path, secret_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"storage\.secret_file"):
        resolve_credentials(storage, {})


def test_endpoint_configured_or_embedded_or_error(tmp_path: Path) -> None:
    configured = _storage(tmp_path, endpoint="http://10.0.0.1:9000")
    assert resolve_endpoint(configured) == "http://10.0.0.1:9000"
    with pytest.raises(StorageError, match="medray store up"):
        resolve_endpoint(_storage(tmp_path))
    state = {"pid": os.getpid(), "endpoint": "http://127.0.0.1:1"}
    (tmp_path / embedded.STATE_FILE).write_text(json.dumps(state))
    # This process is not weed: a stale state file must not count as running.
    if Path("/proc/self/cmdline").exists():
        with pytest.raises(StorageError):
            resolve_endpoint(_storage(tmp_path))


@pytest.mark.parametrize("endpoint", ["minio:9000", "ftp://x:1", "http://h:1/path"])
def test_bad_endpoint_is_config_error(endpoint: str) -> None:
    with pytest.raises(ConfigError, match=r"storage\.endpoint"):
        ObjectStore(endpoint, Secret("a"), Secret("s"))


def test_store_never_shows_or_ships_secrets() -> None:
    store = ObjectStore(
        "http://127.0.0.1:9", Secret("AKIDVISIBLE"), Secret("TOPSECRET")
    )
    assert "TOPSECRET" not in repr(store) and "AKIDVISIBLE" not in repr(store)
    with pytest.raises(TypeError, match="from_settings"):
        pickle.dumps(store)


def test_unreachable_store_error_names_object_not_secret() -> None:
    store = ObjectStore(
        "http://127.0.0.1:9", Secret("AKIDVISIBLE"), Secret("TOPSECRET")
    )
    store._client._http.connection_pool_kw["retries"] = 0  # fail fast
    with pytest.raises(StorageError) as caught:
        store.get("bucket-x", "a/b.dcm")
    message = str(caught.value)
    assert "s3://bucket-x/a/b.dcm" in message and "store up" in message
    assert "TOPSECRET" not in message


def test_derive_key_layout() -> None:
    digest = "ab" * 32
    assert derive_key("p", digest, "1.2.3", "1.2.3.4").startswith("p/")
    key = derive_key("p/q/", digest, "1.2.3", "1.2.3.4")
    parts = key.split("/")
    assert parts[:2] == ["p", "q"] and len(parts[2]) == 16 and len(parts[3]) == 16
    assert parts[4] == digest[:20] + ".dcm"
    assert derive_key("", digest) == f"{UNSORTED}/{digest[:20]}"
    assert derive_key("p", digest, "1.2.3", None) == f"p/{UNSORTED}/{digest[:20]}"


def test_folder_ends_a_prefix_with_a_slash() -> None:
    assert S3Url.parse("s3://b-1/pre/sub/").folder == "pre/sub/"
    assert S3Url.parse("s3://b-1/pre").folder == "pre/"
    assert S3Url.parse("s3://b-1").folder == ""


def test_status_shows_the_jobs_of_a_folder_and_below() -> None:
    from ray_cluster.cli.status import _under

    target = S3Url.parse("s3://b-1/site/")
    assert _under("s3://b-1/site", target)
    assert _under("s3://b-1/site/2026", target)
    assert not _under("s3://b-1/site-b", target)
    assert not _under("s3://b-1", target)
    assert not _under("s3://other/site", target)
    assert _under("s3://b-1/anything", S3Url.parse("s3://b-1"))
