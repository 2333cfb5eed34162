"""``medray cluster``: nodes, pools and pending demand of a Ray cluster."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ray_cluster.cli._common import (
    build_settings,
    config_option,
    echo_json,
    handle_errors,
    json_option,
)
from ray_cluster.cluster import ClusterStatus, cluster_status

__all__ = ["cluster", "print_status"]


def _resources(values: dict[str, float]) -> str:
    shown = {k: v for k, v in values.items() if k not in ("memory",)}
    return ", ".join(
        f"{k}={v / (1 << 20):.0f}MiB" if k == "object_store_memory" else f"{k}={v:g}"
        for k, v in shown.items()
    )


def print_status(status: ClusterStatus, console: Console) -> None:
    """Print the snapshot as tables on stdout."""
    console.print(f"cluster at {status.address}: {len(status.nodes)} nodes")
    pools = Table("pool", "nodes", "total", "available")
    for pool in status.pools:
        pools.add_row(
            pool.name,
            str(pool.nodes),
            _resources(pool.total),
            _resources(pool.available),
        )
    console.print(pools)
    nodes = Table("node", "address", "pool", "type", "total")
    for node in status.nodes:
        nodes.add_row(
            node.node_id[:12] + (" (head)" if node.is_head else ""),
            node.address,
            node.pool,
            node.node_type or "-",
            _resources(node.total),
        )
    console.print(nodes)
    demand = status.demand
    if not demand.bundles and not demand.pending_nodes:
        console.print("pending demand: none")
        return
    for bundle in demand.bundles:
        console.print(
            f"pending demand: {bundle['count']} x {_resources(bundle['resources'])}"
        )
    for node_type, count in sorted(demand.pending_nodes.items()):
        console.print(f"nodes on their way: {count} x {node_type}")


@click.group()
def cluster() -> None:
    """Look at the Ray cluster medray runs on."""


@cluster.command()
@click.option(
    "--address",
    envvar="MEDRAY_CLUSTER__ADDRESS",
    default=None,
    help="Ray cluster: 'auto', ray://HOST:PORT or a GCS HOST:PORT (default auto).",
)
@config_option
@json_option
@handle_errors
def status(address: str | None, config_path: Path | None, as_json: bool) -> None:
    """Show nodes, pools (by resource) and pending demand."""
    settings = build_settings(config_path, {"cluster": {"address": address}})
    snapshot = cluster_status(settings)
    if as_json:
        echo_json(snapshot.to_dict())
    else:
        print_status(snapshot, Console())
