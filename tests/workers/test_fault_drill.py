"""The fault drill (bench/drill.py), short: app-like clients push while RabbitMQ, Redis and a
worker child are killed with SIGKILL, on a stack of the test's own (other ports, own state), so
the suite's services are not touched. Nothing lost, nothing doubled, nothing failed, no 500,
and the queue never holds more messages than there are unapplied batches (plus a few)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.drill import Stack, drill, own_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with own_stack(tmp_path / "state") as stack:
        yield stack


def test_a_backlog_drains_exactly_once_through_broker_redis_and_worker_kills(
    stack: Stack, tmp_path: Path
) -> None:
    result = drill(stack, clients=4, seconds=36, port=18171, log_dir=tmp_path)
    assert result["drain_seconds"] is not None, result  # the backlog drained
    assert result["accepted_batches"] > 20, result
    assert result["exactly_once"], result["totals"]  # every counter = the last id its app sent
    assert result["failed_batches"] == 0
    assert set(result["status"]) <= {202, 503, 0}, result["status"]  # 0: a lost reply; no 500
    assert result["max_excess"] <= 5, result  # no amplification
