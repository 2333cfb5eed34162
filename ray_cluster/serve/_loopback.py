"""Keep a local Serve replica's gRPC server on loopback.

Ray Serve 2.60 starts a gRPC server in every replica for calls between
deployments and binds it to every interface (``[::]:0``). On a node Ray runs on
loopback only (a local Ray started by medray), that server would be the one
listener reachable from the network. `bind_replica_grpc_to_loopback`, called
in a replica's constructor (which Serve runs before it starts that server),
makes the server bind ``127.0.0.1`` instead. On a cluster node nothing changes:
replicas on other nodes must reach it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["bind_replica_grpc_to_loopback"]

logger = logging.getLogger(__name__)

_EVERY_INTERFACE = "[::]:0"
_LOOPBACK = "127.0.0.1:0"


def _loopback_port(add_port: Callable[[Any, str], int]) -> Callable[[Any, str], int]:
    def add_port_on_loopback(server: Any, address: str) -> int:
        return add_port(server, _LOOPBACK if address == _EVERY_INTERFACE else address)

    add_port_on_loopback.medray_loopback = True  # type: ignore[attr-defined]
    return add_port_on_loopback


def bind_replica_grpc_to_loopback() -> bool:
    """Make this replica's inter-deployment gRPC server bind loopback.

    Only on a node whose Ray address is ``127.0.0.1``.

    Returns:
        Whether the server will bind loopback.
    """
    import ray

    if ray.util.get_node_ip_address() != "127.0.0.1":
        return False
    try:
        from ray.serve._private import replica
    except ImportError:  # pragma: no cover - another Ray layout
        logger.warning("Serve's replica module moved; its gRPC server binds [::]")
        return False
    add_port = getattr(replica, "add_port_to_grpc_server", None)
    if add_port is None:  # pragma: no cover - another Ray layout
        logger.warning("Serve's replica gRPC set-up changed; it binds [::]")
        return False
    if not getattr(add_port, "medray_loopback", False):
        setattr(replica, "add_port_to_grpc_server", _loopback_port(add_port))  # noqa: B010
    return True
