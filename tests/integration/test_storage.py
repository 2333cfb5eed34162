"""ObjectStore against a real ``weed mini``; the embedded store's guarantees."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from ray_cluster.cli.store import store as store_group
from ray_cluster.config import Secret, StorageSettings
from ray_cluster.embedded import PORT_FLAGS, EmbeddedStore
from ray_cluster.errors import ObjectNotFoundError, StorageError
from ray_cluster.storage import ObjectStore

if TYPE_CHECKING:
    from tests.conftest import S3Server

pytestmark = pytest.mark.integration


def test_put_get_stat_list_delete(s3_server: S3Server, bucket: str) -> None:
    store = s3_server.store()
    info = store.put(bucket, "a/one.bin", b"0123456789", metadata={"sha256": "x1"})
    store.put(bucket, "a/two.bin", b"")
    store.put(bucket, "b/three.bin", b"3")
    assert info.size == 10 and info.etag

    assert store.get(bucket, "a/one.bin") == b"0123456789"
    assert store.get_range(bucket, "a/one.bin", 2, 3) == b"234"
    assert store.get_range(bucket, "a/one.bin", 8, 100) == b"89"
    stat = store.stat(bucket, "a/one.bin")
    assert (stat.size, stat.etag, stat.metadata["sha256"]) == (10, info.etag, "x1")
    assert store.exists(bucket, "a/two.bin")
    assert not store.exists(bucket, "a/none.bin")
    assert [o.key for o in store.list(bucket, "a/")] == ["a/one.bin", "a/two.bin"]

    store.delete(bucket, "b/three.bin")
    store.delete(bucket, "b/three.bin")  # missing: not an error
    assert store.delete_prefix(bucket, "a/") == 2
    assert list(store.list(bucket)) == []


def test_large_object_single_put(s3_server: S3Server, bucket: str) -> None:
    data = os.urandom(6 * 1024 * 1024 + 7)
    s3_server.store().put(bucket, "big.bin", data)
    assert s3_server.store().get(bucket, "big.bin") == data


def test_put_file_and_map_threads(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    store = s3_server.store()
    local = tmp_path / "f.bin"
    local.write_bytes(b"file body")
    store.put_file(bucket, "f.bin", local, metadata={"k": "v"})
    assert store.stat(bucket, "f.bin").metadata == {"k": "v"}
    keys = [f"m/{i:03d}" for i in range(20)]
    store.map_threads(lambda k: store.put(bucket, k, k.encode()), keys)
    assert store.map_threads(lambda k: store.get(bucket, k), keys) == [
        k.encode() for k in keys
    ]


def test_missing_object_and_bucket(s3_server: S3Server, bucket: str) -> None:
    store = s3_server.store()
    with pytest.raises(ObjectNotFoundError, match=f"s3://{bucket}/nope.dcm"):
        store.get(bucket, "nope.dcm")
    with pytest.raises(ObjectNotFoundError):
        store.stat(bucket, "nope.dcm")
    with pytest.raises(KeyError):  # ObjectNotFoundError is a KeyError too
        store.get("no-such-bucket-here", "x")


def test_wrong_keys_refused(s3_server: S3Server, bucket: str) -> None:
    s3_server.store().put(bucket, "x", b"1")
    for access, secret in [
        (s3_server.access_key, "not-the-secret"),
        ("UNKNOWNKEY", s3_server.secret_key),
    ]:
        wrong = ObjectStore(s3_server.endpoint, Secret(access), Secret(secret))
        with pytest.raises(StorageError, match="refused") as caught:
            wrong.get(bucket, "x")
        assert "not-the-secret" not in str(caught.value)
        assert s3_server.secret_key not in str(caught.value)
        with pytest.raises(StorageError, match="refused"):
            wrong.put(bucket, "y", b"2")
    assert not s3_server.store().exists(bucket, "y")


def test_anonymous_refused(s3_server: S3Server, bucket: str) -> None:
    s3_server.store().put(bucket, "x", b"1")
    parts = urlsplit(s3_server.endpoint)
    for method, body in [("GET", None), ("PUT", b"anon")]:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
        conn.request(method, f"/{bucket}/x", body=body)
        assert conn.getresponse().status == 403
        conn.close()
    assert s3_server.store().get(bucket, "x") == b"1"


def _listening(pid: int) -> set[tuple[str, int]]:
    """Return (address, port) of every TCP socket ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.add((address, int(port, 16)))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_bound_to_loopback_on_chosen_ports_only(s3_server: S3Server) -> None:
    listening = _listening(s3_server.info.pid)
    assert listening, "weed listens on nothing?"
    assert {address for address, _ in listening} == {"0100007F"}  # 127.0.0.1
    assert {port for _, port in listening} <= set(s3_server.info.ports.values())
    assert set(s3_server.info.ports) == set(PORT_FLAGS)


def test_store_found_through_data_dir(s3_server: S3Server, bucket: str) -> None:
    data_dir = s3_server.info.data_dir
    status = EmbeddedStore(data_dir).status()
    assert status.running and status.endpoint == s3_server.endpoint
    again = EmbeddedStore(data_dir, port=0).start()
    assert again.already_running and again.pid == s3_server.info.pid
    # No endpoint, no keys configured: both come from the running store.
    store = ObjectStore.from_settings(StorageSettings(data_dir=data_dir), env={})
    store.put(bucket, "via-state", b"ok")
    assert store.get(bucket, "via-state") == b"ok"
    mode = (data_dir / "store-credentials").stat().st_mode & 0o777
    assert mode == 0o600


def test_cli_up_status_down(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"MEDRAY_STORAGE__DATA_DIR": str(tmp_path)}
    try:
        up = runner.invoke(store_group, ["up", "--port", "0", "--json"], env=env)
        assert up.exit_code == 0, up.output
        started = json.loads(up.output)
        assert started["endpoint"].startswith("http://127.0.0.1:")
        again = json.loads(runner.invoke(store_group, ["up", "--json"], env=env).output)
        assert again["already_running"] and again["pid"] == started["pid"]

        status = runner.invoke(store_group, ["status", "--json"], env=env)
        assert json.loads(status.output)["running"] is True
        keys = (tmp_path / "store-credentials").read_text()
        for line in keys.splitlines():
            assert line.split("=", 1)[1] not in up.output + status.output

        down = runner.invoke(store_group, ["down", "--json"], env=env)
        assert json.loads(down.output)["stopped"] is True
        with pytest.raises(ProcessLookupError):
            os.kill(started["pid"], 0)
        final = runner.invoke(store_group, ["status"], env=env)
        assert "not running" in final.output
    finally:
        EmbeddedStore(tmp_path).stop()


def test_cli_up_with_endpoint_starts_nothing(tmp_path: Path) -> None:
    env = {
        "MEDRAY_STORAGE__DATA_DIR": str(tmp_path),
        "MEDRAY_STORAGE__ENDPOINT": "http://minio.example:9000",
    }
    result = CliRunner().invoke(store_group, ["up"], env=env)
    assert result.exit_code == 0 and "nothing was started" in result.output
    assert not (tmp_path / "store.json").exists()


def test_unreachable_after_stop_is_storage_error(tmp_path: Path) -> None:
    embedded = EmbeddedStore(tmp_path, port=0)
    info = embedded.start()
    embedded.stop()
    store = ObjectStore(info.endpoint, info.access_key, info.secret_key)
    with pytest.raises(StorageError, match="cannot reach"):
        store.get("some-bucket", "k")
