"""Crash injection for the exactly-once tests (G1): die between two steps of applying a batch.

Off unless the worker runs with OFFGRID_FAULT_INJECTION=1 (the test suite's workers only).
A test arms one step by setting the Redis key `offgrid:fault:crash_at`; the first worker process
that reaches that step clears the key and exits at once, as if the machine lost power. Armed
with `freeze:<step>`, it stops itself instead (SIGSTOP, as a frozen VM or a long pause would),
after writing its pid to `offgrid:fault:frozen` for the test to SIGCONT it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from redis import Redis

CRASH_KEY = "offgrid:fault:crash_at"
FROZEN_KEY = "offgrid:fault:frozen"
STEPS = (
    "after_claim",
    "before_commit",
    "before_record_write",
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
        if armed is None or armed.decode() not in (step, f"freeze:{step}"):
            return
        if redis.delete(CRASH_KEY) != 1:
            return  # another process took it
        if armed.decode() == step:
            os._exit(70)
        redis.set(FROZEN_KEY, os.getpid())
        os.kill(os.getpid(), signal.SIGSTOP)

    return maybe_crash
