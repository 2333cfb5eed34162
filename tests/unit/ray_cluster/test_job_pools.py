"""Elastic actor pools and the driver's choice of which dead actor to replace."""

from __future__ import annotations

from typing import Any

import pytest
from ray.exceptions import ActorDiedError, RayTaskError

from ray_cluster._internal.pools import ActorPool, Member
from ray_cluster.job import _Flight, _Pools, _replace_actor


class _Handle:
    def __init__(self, number: int) -> None:
        self.number = number


def _pool(name: str, most: int, per_actor: int = 2) -> ActorPool:
    made = iter(range(1000))
    return ActorPool(
        name,
        make=lambda: _Handle(next(made)),
        probe=lambda handle: f"probe-{handle.number}",
        most=most,
        per_actor=per_actor,
        resources={"CPU": 1.0},
        placement_timeout_s=60,
    )


def _placed(pool: ActorPool) -> None:
    for member in pool.members:
        member.probe = None


def test_grow_stops_at_most_and_shrink_releases_idle_unplaced_first() -> None:
    pool = _pool("cpu", most=3)
    pool.grow(10)
    assert len(pool) == 3 and pool.created_total == 3
    pool.members[0].probe = None
    pool.members[0].busy = 1
    pool.members[1].probe = None
    pool.shrink(keep=2)
    assert [m.name for m in pool.members] == ["cpu-1", "cpu-2"], "unplaced goes first"
    pool.shrink(keep=0)
    assert [m.name for m in pool.members] == ["cpu-1"], "busy actors stay"


def test_pick_takes_only_placed_actors_with_room() -> None:
    pool = _pool("cpu", most=2, per_actor=2)
    pool.grow(2)
    assert pool.pick() is None, "nothing is placed yet"
    pool.members[1].probe = None
    first = pool.pick()
    assert first is pool.members[1]
    first.busy = 2
    assert pool.pick() is None, "the placed actor is full"


def _flight(pools: _Pools) -> _Flight:
    _placed(pools.preprocess)
    _placed(pools.inference)
    task: Any = ("job", "1.2.3", "abcd", ("k",), 1)
    return _Flight(task, pools.preprocess.members[0], pools.inference.members[0])


@pytest.fixture
def pools() -> _Pools:
    made = _Pools(preprocess=_pool("cpu", 2), inference=_pool("gpu", 1), gpu=True)
    made.preprocess.grow(2)
    made.inference.grow(1)
    return made


def test_dead_inference_actor_is_replaced_not_the_preprocessing_one(
    pools: _Pools,
) -> None:
    flight = _flight(pools)
    error = RayTaskError("process", "tb", ActorDiedError()).as_instanceof_cause()
    assert _replace_actor(pools, flight, error) is True
    assert flight.inference not in pools.inference.members
    assert flight.preprocess in pools.preprocess.members
    assert pools.inference.replaced_total == 1


def test_dead_preprocessing_actor_is_replaced(pools: _Pools) -> None:
    flight = _flight(pools)
    assert _replace_actor(pools, flight, ActorDiedError()) is True
    assert flight.preprocess not in pools.preprocess.members
    assert flight.inference in pools.inference.members


def test_study_error_replaces_no_actor(pools: _Pools) -> None:
    flight = _flight(pools)
    error = RayTaskError("process", "tb", OSError("reset")).as_instanceof_cause()
    assert _replace_actor(pools, flight, error) is False
    assert len(pools.preprocess) == 2 and len(pools.inference) == 1


def test_member_placed_flag() -> None:
    member = Member(handle=None, probe="ref", name="cpu-1")
    assert not member.placed
    member.probe = None
    assert member.placed


def test_actors_that_keep_failing_to_start_fail_the_job() -> None:
    from ray.exceptions import RayError

    from ray_cluster.errors import ClusterError

    pool = _pool("gpu", most=1)
    for _ in range(2):
        pool.grow(1)
        pool._failed_start(pool.members[0], RayError())
    assert len(pool) == 0 and pool.replaced_total == 2
    pool.grow(1)
    with pytest.raises(ClusterError, match="3 gpu actors in a row failed to start"):
        pool._failed_start(pool.members[0], RayError())
