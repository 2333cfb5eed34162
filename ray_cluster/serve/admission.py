"""Admission of predict requests at the ingress: refuse early instead of queueing.

Each served model has a `Gate`. It counts the model's requests in flight and
refuses a new one (503 ``overloaded``) when

- the count reaches a fixed bound, what the model's replicas and queue can hold
  (`ray_cluster.serve.app.model_capacity`); or, with a wait budget set
  (``serve.admission_wait_s``),
- the count reaches the budget times the model's recent service rate: by
  Little's law the requests ahead of a new one would then keep it longer than
  the budget.

The service rate is measured while the model is busy (at least one request in
flight): completions divided by the busy time between them, over the last
`RATE_SAMPLES` completions. Idle time does not lower it, and it rises with the
replicas the autoscaler adds.

The ingress asks `Gate.has_room` before it reads a body, so a refusal costs no
read, and counts the request in (`Gate.try_enter`) once the body is read:
uploads still on their way hold no model capacity.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["MIN_RATE_SAMPLES", "RATE_SAMPLES", "Gate"]

#: Completions the service rate is measured over.
RATE_SAMPLES = 64
#: Completions needed before the wait budget applies (the fixed bound alone before).
MIN_RATE_SAMPLES = 8


class Gate:
    """Requests in flight for one model, and whether one more may come in.

    Args:
        bound: Most requests in flight, whatever the rate.
        wait_s: Longest estimated wait of an admitted request; ``None``: only
            ``bound`` applies.
        clock: Monotonic seconds (a parameter for tests).
    """

    def __init__(
        self,
        bound: int,
        wait_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bound = max(1, bound)
        self.wait_s = wait_s
        self.clock = clock
        self.in_flight = 0
        self._gaps: deque[float] = deque(maxlen=RATE_SAMPLES)
        self._busy_since = 0.0
        self._last_done = 0.0

    def service_rate(self) -> float | None:
        """Completions per busy second, or ``None`` before `MIN_RATE_SAMPLES`."""
        if len(self._gaps) < MIN_RATE_SAMPLES:
            return None
        busy = sum(self._gaps)
        return len(self._gaps) / busy if busy > 0 else math.inf

    def limit(self) -> int:
        """Requests in flight allowed now: at least one, at most ``bound``."""
        rate = self.service_rate()
        if self.wait_s is None or rate is None:
            return self.bound
        if math.isinf(rate):
            return self.bound
        allowed = math.floor(self.wait_s * rate + 1e-9)  # not 19 for 20.0 - eps
        return max(1, min(self.bound, allowed))

    def has_room(self) -> bool:
        """Whether `try_enter` would count a request in now."""
        return self.in_flight < self.limit()

    def try_enter(self) -> bool:
        """Count a request in and return ``True``, or ``False`` when it must wait."""
        if not self.has_room():
            return False
        if self.in_flight == 0:
            self._busy_since = self.clock()
        self.in_flight += 1
        return True

    def leave(self, answered: bool = True) -> None:
        """Count a request out (after `try_enter` returned ``True``).

        Args:
            answered: The model answered it. A request refused on the way (a bad
                body, a timeout) is no service sample: its time counts towards
                the next answer's, which errs on the side of a lower rate.
        """
        if answered:
            now = self.clock()
            self._gaps.append(now - max(self._busy_since, self._last_done))
            self._last_done = now
        self.in_flight -= 1
