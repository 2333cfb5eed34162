"""Elastic pools of Ray actors that follow the work a job still has.

A pool creates actors as the driver asks for them, up to its most. Ray keeps
an actor that does not fit yet as pending resource demand, which is what the
autoscaler reads to add nodes; the driver sends work only to actors that have
answered their first call, so the first node to come up starts working while
others are still being added. Idle actors are killed as soon as the work left
needs fewer of them, so their nodes go idle and the autoscaler removes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayError

from ray_cluster.errors import ClusterError

__all__ = ["ActorPool", "Member"]

logger = logging.getLogger(__name__)

#: Actors of a pool that may fail to start in a row before the job fails.
_MAX_START_FAILURES = 3


@dataclass(eq=False)
class Member:
    """One actor of a pool.

    Attributes:
        handle: The Ray actor handle.
        probe: Reference of its first call while it is not placed yet.
        busy: Studies in flight that use this actor.
        name: Short name for logs (pool and number).
    """

    handle: Any
    probe: Any | None
    name: str
    busy: int = 0
    created: float = field(default_factory=time.monotonic)

    @property
    def placed(self) -> bool:
        """Whether the actor has answered its first call."""
        return self.probe is None


class ActorPool:
    """Actors of one kind, created on demand and released when idle.

    Args:
        name: Pool name for logs and errors (``cpu``, ``gpu``...).
        make: Create one actor (with its resource options) and return its handle.
        probe: Start a cheap call on a handle; its reference resolves once placed.
        most: Most actors at once.
        per_actor: Most studies in flight per actor.
        resources: What one actor asks for, for messages.
        placement_timeout_s: Fail when work waits this long and no actor of
            the pool has been placed.
    """

    def __init__(
        self,
        name: str,
        make: Callable[[], Any],
        probe: Callable[[Any], Any],
        most: int,
        per_actor: int,
        resources: dict[str, float],
        placement_timeout_s: float,
    ) -> None:
        if most < 1 or per_actor < 1:
            raise ValueError(f"pool {name}: most and per_actor must be >= 1")
        self.name = name
        self.most = most
        self.per_actor = per_actor
        self.resources = resources
        self.placement_timeout_s = placement_timeout_s
        self.members: list[Member] = []
        self.created_total = 0
        self.replaced_total = 0
        self._make = make
        self._probe = probe
        self._starved_since: float | None = None
        self._start_failures = 0

    def __len__(self) -> int:
        return len(self.members)

    def grow(self, wanted: int) -> None:
        """Create actors until the pool has ``min(wanted, most)``."""
        target = min(wanted, self.most)
        while len(self.members) < target:
            handle = self._make()
            self.created_total += 1
            member = Member(
                handle=handle,
                probe=self._probe(handle),
                name=f"{self.name}-{self.created_total}",
            )
            self.members.append(member)
            logger.debug("pool %s: asked for actor %s", self.name, member.name)

    def shrink(self, keep: int) -> None:
        """Kill idle actors beyond ``keep``, unplaced ones first."""
        idle = sorted((m for m in self.members if m.busy == 0), key=lambda m: m.placed)
        while len(self.members) > keep and idle:
            member = idle.pop(0)
            self._kill(member)
            logger.debug("pool %s: released idle actor %s", self.name, member.name)

    def probes(self) -> list[Any]:
        """Return the references of first calls still pending."""
        return [m.probe for m in self.members if m.probe is not None]

    def poll(self, pending_work: int) -> None:
        """Mark actors placed whose first call returned; drop those that died.

        Args:
            pending_work: Studies queued or in flight; with none, the
                placement clock stops.

        Raises:
            ClusterError: Work has waited longer than the placement timeout
                and no actor of this pool was placed.
        """
        waiting = self.probes()
        if waiting:
            done, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
            for ref in done:
                member = next(m for m in self.members if m.probe == ref)
                try:
                    ray.get(ref)
                except RayError as exc:
                    self._failed_start(member, exc)
                    continue
                member.probe = None
                self._start_failures = 0
                logger.info(
                    "pool %s: actor %s placed after %.1f s",
                    self.name,
                    member.name,
                    time.monotonic() - member.created,
                )
        self._check_starved(pending_work)

    def _failed_start(self, member: Member, exc: RayError) -> None:
        self._start_failures += 1
        self.replace(member)
        if self._start_failures >= _MAX_START_FAILURES:
            cause = getattr(exc, "cause", None) or exc
            first_line = (str(cause).splitlines() or [""])[0]
            raise ClusterError(
                f"{self._start_failures} {self.name} actors in a row failed to "
                f"start ({type(cause).__name__}: {first_line}); fix the cause and "
                "run the job again"
            ) from None
        logger.warning(
            "pool %s: actor %s failed to start (%s); asking for another",
            self.name,
            member.name,
            type(exc).__name__,
        )

    def _check_starved(self, pending_work: int) -> None:
        if pending_work == 0 or any(m.placed for m in self.members):
            self._starved_since = None
            return
        now = time.monotonic()
        if self._starved_since is None:
            self._starved_since = now
        elif now - self._starved_since > self.placement_timeout_s:
            raise ClusterError(
                f"no {self.name} actor could be placed in "
                f"{self.placement_timeout_s:.0f} s (each asks for {self.resources}); "
                "check that the cluster has, or its autoscaler can add, a node "
                "type with these resources, or raise cluster.placement_timeout_s"
            )

    def pick(self) -> Member | None:
        """Return the placed actor with the fewest studies, if one has room."""
        free = [m for m in self.members if m.placed and m.busy < self.per_actor]
        return min(free, key=lambda m: m.busy) if free else None

    def replace(self, member: Member) -> None:
        """Drop a dead actor; the next `grow` asks for a new one."""
        if member in self.members:
            self.replaced_total += 1
            self._kill(member)

    def kill_all(self) -> None:
        """Kill every actor of the pool."""
        for member in list(self.members):
            self._kill(member)

    def _kill(self, member: Member) -> None:
        self.members.remove(member)
        try:
            ray.kill(member.handle, no_restart=True)
        except Exception as exc:  # already gone with its node
            logger.debug("pool %s: kill %s: %s", self.name, member.name, exc)
