"""Crash injection for the exactly-once tests (G1): die between two steps of applying a batch.

Off unless the worker runs with OFFGRID_FAULT_INJECTION=1 (the test suite's workers only).
A test arms one step by setting the Redis key `offgrid:fault:crash_at`; the first worker process
that reaches that step clears the key and exits at once, as if the machine lost power.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from redis import Redis

CRASH_KEY = "offgrid:fault:crash_at"
STEPS = (
    "after_claim",
    "after_record_write",
    "after_head_write",
    "after_results",
    "after_ledger",
    "after_final",
)


def crash_point(redis: Redis) -> Callable[[str], None] | None:
    if os.environ.get("OFFGRID_FAULT_INJECTION") != "1":
        return None

    def maybe_crash(step: str) -> None:
        armed = redis.get(CRASH_KEY)
        if armed is not None and armed.decode() == step and redis.delete(CRASH_KEY) == 1:
            os._exit(70)

    return maybe_crash
