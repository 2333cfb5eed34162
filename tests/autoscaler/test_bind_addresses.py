"""A local Ray started by medray listens on loopback only, with token auth on.

Runs in the ordinary integration session (it starts its own Ray in a child
process and never runs ``ray stop``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_LOOPBACK = ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]")

_PROBE = textwrap.dedent(
    """
    import json, os, subprocess
    import ray
    from ray._raylet import AuthenticationMode, get_authentication_mode
    from ray_cluster._internal.ray_runtime import connect_ray
    from ray_cluster.config import ClusterSettings, Settings

    connect_ray(Settings(cluster=ClusterSettings(num_cpus=1, object_store_mb=128)))

    @ray.remote
    def pid():
        return os.getpid()

    ray.get(pid.remote())
    table = subprocess.run(
        ["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True
    ).stdout.split()
    children = {}
    for child, parent in zip(table[::2], table[1::2]):
        children.setdefault(int(parent), []).append(int(child))
    mine, todo = set(), [os.getpid()]
    while todo:
        pid_ = todo.pop()
        mine.add(pid_)
        todo.extend(children.get(pid_, []))
    lines = subprocess.run(
        ["ss", "-ltnpH"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    found = [
        line.split()[3]
        for line in lines
        if any(f"pid={p}," in line for p in mine)
    ]
    token = get_authentication_mode() == AuthenticationMode.TOKEN
    gcs = ray.get_runtime_context().gcs_address
    ray.shutdown()
    print(json.dumps({"listen": found, "token": token, "gcs": gcs}))
    """
)


def test_local_ray_listens_on_loopback_with_token_auth() -> None:
    if subprocess.run(["which", "ss"], capture_output=True).returncode != 0:
        pytest.skip("ss (iproute2) is not installed")
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=180,
        env={k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["gcs"].startswith("127.0.0.1:")
    assert len(report["listen"]) >= 3, "expected GCS, raylet and worker listeners"
    exposed = [a for a in report["listen"] if not a.startswith(_LOOPBACK)]
    assert not exposed, f"Ray listens beyond loopback on {exposed}"
    assert report["token"], "token authentication must be on for a local Ray"
