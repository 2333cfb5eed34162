"""What a Ray cluster holds: nodes, pools by resource, and pending demand.

`cluster_status` reads the GCS of the cluster the driver is connected to:
alive nodes and their resources from ``ray.nodes()``, and the demand the
autoscaler sees (resource bundles not placed yet, nodes being launched) from
the status the launcher autoscaler publishes, or, when there is none (KubeRay,
autoscaler v2), from the GCS autoscaler state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import ray

from ray_cluster.config import Settings
from ray_cluster.errors import ClusterError

__all__ = ["ClusterStatus", "Demand", "NodeInfo", "PoolInfo", "cluster_status"]

logger = logging.getLogger(__name__)

#: Key of the launcher autoscaler's status in the GCS key-value store.
_AUTOSCALER_STATUS_KEY = b"__autoscaling_status"

#: Resources every node has; a node's pool is named by what it has beyond them.
_BASE_RESOURCES = frozenset({"CPU", "memory", "object_store_memory"})


@dataclass
class NodeInfo:
    """One alive node."""

    node_id: str
    address: str
    pool: str
    is_head: bool
    node_type: str | None
    total: dict[str, float]
    available: dict[str, float]


@dataclass
class PoolInfo:
    """Nodes that share a pool (GPU, medray_cpu, head, plain CPU)."""

    name: str
    nodes: int
    total: dict[str, float]
    available: dict[str, float]


@dataclass
class Demand:
    """Resource bundles waiting for room, and nodes on their way."""

    bundles: list[dict[str, Any]] = field(default_factory=list)
    pending_nodes: dict[str, int] = field(default_factory=dict)
    source: str = "none"


@dataclass
class ClusterStatus:
    """A snapshot of the cluster; ``--json`` prints `to_dict`."""

    address: str
    nodes: list[NodeInfo]
    pools: list[PoolInfo]
    demand: Demand

    def to_dict(self) -> dict[str, Any]:
        """Return the snapshot as JSON-ready data."""
        return asdict(self)


def _is_internal(name: str) -> bool:
    return name.startswith("node:") or name.startswith("accelerator_type:")


def _clean(resources: Mapping[str, Any]) -> dict[str, float]:
    return {
        str(k): round(float(v), 3)
        for k, v in sorted(resources.items())
        if not _is_internal(str(k))
    }


def pool_of(resources: Mapping[str, float], is_head: bool) -> str:
    """Name the pool of a node from its resources.

    Args:
        resources: Total resources of the node.
        is_head: Whether the node is the head.

    Returns:
        ``gpu`` with GPUs, else the first custom resource (``medray_cpu``), else
        ``head`` for the head node and ``cpu`` for others.
    """
    if resources.get("GPU", 0) > 0:
        return "gpu"
    custom = sorted(
        k for k in resources if k not in _BASE_RESOURCES and not _is_internal(k)
    )
    if custom:
        return custom[0]
    return "head" if is_head else "cpu"


def _sum(dicts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for item in dicts:
        for key, value in item.items():
            total[key] = round(total.get(key, 0.0) + value, 3)
    return dict(sorted(total.items()))


def _available_by_node() -> dict[str, dict[str, float]]:
    """Return available resources per node id, from the GCS."""
    try:
        from ray._private.state import available_resources_per_node

        found = available_resources_per_node()
    except Exception as exc:  # Ray internals vary between releases.
        logger.debug("no per-node availability: %s", type(exc).__name__)
        return {}
    return {str(k): _clean(v) for k, v in found.items()}


def _nodes() -> list[NodeInfo]:
    available = _available_by_node()
    nodes = []
    for raw in ray.nodes():
        if not raw.get("Alive"):
            continue
        total = _clean(raw.get("Resources", {}))
        is_head = any(k.startswith("node:__internal_head__") for k in raw["Resources"])
        labels = raw.get("Labels") or {}
        node_type = labels.get("ray.io/node-group") or labels.get("ray.io/node-type")
        nodes.append(
            NodeInfo(
                node_id=str(raw["NodeID"]),
                address=str(raw.get("NodeManagerAddress", "")),
                pool=pool_of(total, is_head),
                is_head=is_head,
                node_type=node_type,
                total=total,
                available=available.get(str(raw["NodeID"]), {}),
            )
        )
    return sorted(nodes, key=lambda n: (not n.is_head, n.pool, n.node_id))


def _pools(nodes: list[NodeInfo]) -> list[PoolInfo]:
    names = sorted({n.pool for n in nodes})
    return [
        PoolInfo(
            name=name,
            nodes=sum(1 for n in nodes if n.pool == name),
            total=_sum(n.total for n in nodes if n.pool == name),
            available=_sum(n.available for n in nodes if n.pool == name),
        )
        for name in names
    ]


def _launcher_demand() -> Demand | None:
    """Demand from the launcher (v1) autoscaler's published status."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(_AUTOSCALER_STATUS_KEY)
    if not raw:
        return None
    status = json.loads(raw)
    load = status.get("load_metrics_report") or {}
    report = status.get("autoscaler_report") or {}
    bundles = [
        {"resources": dict(bundle), "count": int(count)}
        for bundle, count in (load.get("resource_demand") or [])
    ]
    pending: dict[str, int] = dict(report.get("pending_launches") or {})
    for _ip, node_type, _state in report.get("pending_nodes") or []:
        pending[node_type] = pending.get(node_type, 0) + 1
    return Demand(bundles=bundles, pending_nodes=pending, source="autoscaler")


def _gcs_demand(gcs_address: str) -> Demand | None:
    """Demand from the GCS autoscaler state (KubeRay, autoscaler v2)."""
    from ray.autoscaler.v2.sdk import get_cluster_status

    status = get_cluster_status(gcs_address)
    bundles = [
        {"resources": dict(by_count.bundle), "count": int(by_count.count)}
        for demand in status.resource_demands.ray_task_actor_demand
        for by_count in demand.bundles_by_count
    ]
    pending: dict[str, int] = {}
    for launch in status.pending_launches:
        pending[launch.ray_node_type_name] = (
            pending.get(launch.ray_node_type_name, 0) + launch.count
        )
    for node in status.pending_nodes:
        pending[node.ray_node_type_name] = pending.get(node.ray_node_type_name, 0) + 1
    return Demand(bundles=bundles, pending_nodes=pending, source="gcs")


def _demand(gcs_address: str) -> Demand:
    for reader in (_launcher_demand, lambda: _gcs_demand(gcs_address)):
        try:
            found = reader()
        except Exception as exc:  # Ray internals vary between releases.
            logger.debug("demand reader failed: %s", exc)
            continue
        if found is not None:
            return found
    return Demand()


def cluster_status(settings: Settings | None = None) -> ClusterStatus:
    """Describe the cluster this process is connected to, or joins.

    Args:
        settings: Used only when Ray is not initialized: ``cluster.address``
            says which cluster to join (``auto`` when unset).

    Returns:
        Nodes, pools by resource and pending demand.

    Raises:
        ClusterError: No cluster answers at the address.
    """
    started = False
    if not ray.is_initialized():
        from ray_cluster._internal.ray_runtime import connect_ray

        base = settings or Settings()
        address = base.cluster.address or "auto"
        joined = base.model_copy(
            update={"cluster": base.cluster.model_copy(update={"address": address})}
        )
        try:
            started = connect_ray(joined)
        except ConnectionError as exc:
            raise ClusterError(
                f"no Ray cluster answers at {address}: {exc}; start one (ray start "
                "--head, ray up cluster.yaml) or give --address ray://HOST:10001"
            ) from None
    try:
        gcs_address = ray.get_runtime_context().gcs_address
        nodes = _nodes()
        return ClusterStatus(
            address=gcs_address,
            nodes=nodes,
            pools=_pools(nodes),
            demand=_demand(gcs_address),
        )
    finally:
        if started:
            ray.shutdown()
