"""The HTTP port check of a local `medray serve` (ray_cluster.serve.ports)."""

from __future__ import annotations

import socket

import pytest

from ray_cluster._internal.ray_runtime import free_loopback_port
from ray_cluster.errors import ServeError
from ray_cluster.serve.ports import port_state, wait_for_port

HOST = "127.0.0.1"


def test_a_free_port_passes_and_a_listener_is_named() -> None:
    port = free_loopback_port()
    assert port_state(HOST, port) == "free"
    wait_for_port(HOST, port)
    with socket.socket() as listener:
        listener.bind((HOST, port))
        listener.listen()
        assert port_state(HOST, port) == "taken"
        with pytest.raises(ServeError, match=f"port {port} .* another program"):
            wait_for_port(HOST, port)


def _close_from_the_server_side(port: int) -> None:
    """Leave a connection in TIME-WAIT on ``port``, as a stopped service does.

    The listener binds without ``SO_REUSEADDR``, as Serve's direct ingress
    does: then even a bind with it fails until the connection is gone.
    """
    with socket.socket() as listener:
        listener.bind((HOST, port))
        listener.listen()
        with socket.create_connection((HOST, port)) as client:
            served, _ = listener.accept()
            served.close()  # the server closes first: its side waits
            client.recv(1)


def test_closed_connections_are_waited_for_then_reported() -> None:
    port = free_loopback_port()
    _close_from_the_server_side(port)
    assert port_state(HOST, port) == "closing"
    waits: list[float] = []
    with pytest.raises(ServeError, match="earlier run"):
        wait_for_port(HOST, port, wait_s=0.0, sleep=waits.append)
    assert waits == []
    with pytest.raises(ServeError, match="earlier run"):
        wait_for_port(HOST, port, wait_s=0.05, sleep=lambda s: waits.append(s))
    assert waits and set(waits) == {1.0}
