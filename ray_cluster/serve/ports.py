"""Whether the HTTP port of a local `medray serve` can be bound, before Ray starts.

Ray Serve's direct ingress binds ``serve.port`` without ``SO_REUSEADDR``, so
connections closed by a previous run that stopped moments ago (TIME-WAIT, up
to 60 s on Linux) make that bind fail, and Serve then gives up after a long
traceback. `wait_for_port` waits for them instead, saying so, and turns a port
held by another program into one clear error.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable

from ray_cluster.errors import ServeError

__all__ = ["PORT_WAIT_S", "port_state", "wait_for_port"]

logger = logging.getLogger(__name__)

#: Longest wait for closed connections to leave the port (Linux keeps them 60 s).
PORT_WAIT_S = 65.0


def _binds(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound as Serve binds it (no ``SO_REUSEADDR``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _accepts(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (a wildcard host: on loopback)."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        with socket.create_connection((target, port), timeout=1.0):
            return True
    except OSError:
        return False


def port_state(host: str, port: int) -> str:
    """``"free"``, ``"closing"`` (only closed connections hold it) or ``"taken"``.

    A bind alone cannot tell the two apart: connections closed by a listener
    bound without ``SO_REUSEADDR`` (as Serve binds) refuse even a bind with
    it. A listener accepts a connection; closed connections do not.
    """
    if _binds(host, port):
        return "free"
    return "taken" if _accepts(host, port) else "closing"


def wait_for_port(
    host: str,
    port: int,
    wait_s: float = PORT_WAIT_S,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once ``host:port`` can be bound as Serve binds it.

    Raises:
        ServeError: Another program listens on the port, or closed connections
            still hold it after ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        try:
            state = port_state(host, port)
        except OSError as exc:
            raise ServeError(
                f"cannot bind {host}:{port} ({exc.strerror}); check serve.host"
            ) from None
        if state == "free":
            return
        if state == "taken":
            raise ServeError(
                f"port {port} on {host} is in use by another program; stop it or "
                "choose another port (--port, serve.port)"
            )
        if time.monotonic() >= deadline:
            raise ServeError(
                f"port {port} on {host} is still held by connections of an earlier "
                f"run after {wait_s:.0f} s; try again shortly or choose another "
                "port (--port, serve.port)"
            )
        if not said:
            logger.warning(
                "port %d is held by connections of an earlier run that the system "
                "keeps for up to 60 s after they closed; waiting for them",
                port,
            )
            said = True
        sleep(1.0)
