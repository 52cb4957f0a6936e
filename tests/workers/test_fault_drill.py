"""The fault drill (bench/drill.py), short: app-like clients push while RabbitMQ, Redis and a
worker child are killed with SIGKILL, on a stack of the test's own (other ports, own state), so
the suite's services are not touched. Nothing lost, nothing doubled, nothing failed, no 500,
and the queue never holds more messages than there are unapplied batches (plus a few)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.drill import Stack, drill
from tests.conftest import ROOT

PORTS = {
    "RABBITMQ_PORT": 5683,
    "RABBITMQ_MGMT_PORT": 15683,
    "REDIS_PORT": 6390,
    "MONGO_PORT": 27028,
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    dev_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MONGODB_URL", "BROKER_URL", "REDIS_URL", "RABBITMQ_MANAGEMENT_URL")
    }
    dev_env.update({name: str(port) for name, port in PORTS.items()})
    dev_env["OFFGRID_DEV_STATE"] = str(tmp_path / "state")
    dev_env["OFFGRID_RABBITMQ_NODE"] = "offgrid-drill@localhost"
    started = subprocess.run(
        [str(ROOT / "dev"), "services"], env=dev_env, capture_output=True, text=True, timeout=300
    )
    assert started.returncode == 0, started.stderr
    env = {
        "MONGODB_URL": f"mongodb://127.0.0.1:{PORTS['MONGO_PORT']}/drill",
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:{PORTS['RABBITMQ_PORT']}//",
        "REDIS_URL": f"redis://127.0.0.1:{PORTS['REDIS_PORT']}/0",
        "RABBITMQ_MANAGEMENT_URL": f"http://guest:guest@127.0.0.1:{PORTS['RABBITMQ_MGMT_PORT']}/",
        "JWT_SECRET": secrets.token_urlsafe(32),
        "ADMIN_API_KEY": secrets.token_urlsafe(32),
        "LOCK_TTL": "3",  # a killed child's locks free up soon
        "LOG_LEVEL": "INFO",
        "PROMETHEUS_MULTIPROC_DIR": "",
    }
    yield Stack(env, dev_env, tmp_path / "state")
    subprocess.run([str(ROOT / "dev"), "stop"], env=dev_env, capture_output=True, timeout=300)


def test_a_backlog_drains_exactly_once_through_broker_redis_and_worker_kills(
    stack: Stack, tmp_path: Path
) -> None:
    result = drill(stack, clients=4, seconds=36, port=18171, log_dir=tmp_path)
    assert result["accepted_batches"] > 20, result
    assert result["exactly_once"], result["totals"]  # every counter = the last id its app sent
    assert result["failed_batches"] == 0
    assert set(result["status"]) <= {202, 503, 0}, result["status"]  # 0: a lost reply; no 500
    assert result["max_excess"] <= 5, result  # no amplification
