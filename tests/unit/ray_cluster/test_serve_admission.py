"""The ingress's admission gate: a fixed bound, and a wait budget by service rate."""

from __future__ import annotations

import pytest

from ray_cluster.serve.admission import MIN_RATE_SAMPLES, Gate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def serve_in_turn(gate: Gate, clock: Clock, count: int, seconds: float) -> None:
    """One request at a time, each answered after ``seconds``."""
    for _ in range(count):
        assert gate.try_enter()
        clock.now += seconds
        gate.leave()


def test_without_a_budget_only_the_bound_counts() -> None:
    clock = Clock()
    gate = Gate(3, None, clock)
    serve_in_turn(gate, clock, 20, 1.0)
    assert [gate.try_enter() for _ in range(4)] == [True, True, True, False]
    assert gate.in_flight == 3


def test_the_budget_applies_once_the_rate_is_known() -> None:
    clock = Clock()
    gate = Gate(50, wait_s=0.5, clock=clock)
    serve_in_turn(gate, clock, MIN_RATE_SAMPLES - 1, 0.1)
    assert gate.service_rate() is None
    assert gate.limit() == 50
    serve_in_turn(gate, clock, 1, 0.1)
    assert gate.service_rate() == pytest.approx(10.0)
    assert gate.limit() == 5  # 0.5 s at 10 answers per busy second
    assert sum(gate.try_enter() for _ in range(8)) == 5


def test_idle_time_does_not_lower_the_rate() -> None:
    clock = Clock()
    gate = Gate(50, wait_s=1.0, clock=clock)
    for _ in range(MIN_RATE_SAMPLES):
        serve_in_turn(gate, clock, 1, 0.25)
        clock.now += 60.0  # nobody asks for a minute
    assert gate.service_rate() == pytest.approx(4.0)


def test_batched_answers_count_their_shared_busy_time() -> None:
    clock = Clock()
    gate = Gate(50, wait_s=1.0, clock=clock)
    for _ in range(4):  # batches of 4 answered together after 0.2 s
        assert all(gate.try_enter() for _ in range(4))
        clock.now += 0.2
        for _ in range(4):
            gate.leave()
    assert gate.service_rate() == pytest.approx(20.0)
    assert gate.limit() == 20


def test_at_least_one_request_is_always_admitted() -> None:
    clock = Clock()
    gate = Gate(8, wait_s=0.1, clock=clock)
    serve_in_turn(gate, clock, MIN_RATE_SAMPLES, 5.0)  # a large study each
    assert gate.limit() == 1
    assert gate.try_enter()
    assert not gate.try_enter()


def test_a_request_refused_on_the_way_is_no_sample() -> None:
    clock = Clock()
    gate = Gate(8, wait_s=1.0, clock=clock)
    assert gate.try_enter()
    clock.now += 0.001
    gate.leave(answered=False)
    assert gate.in_flight == 0
    assert gate.service_rate() is None
