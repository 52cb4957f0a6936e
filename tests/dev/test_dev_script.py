"""`./dev` itself: stopping and starting the services again, twice, leaves every one answering.

A second copy of the services runs on other ports with its own state directory, so the
services the rest of the suite uses are not touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import MongoClient

from tests.conftest import ROOT

PORTS = {
    "RABBITMQ_PORT": 5682,
    "RABBITMQ_MGMT_PORT": 15682,
    "REDIS_PORT": 6389,
    "MONGO_PORT": 27027,
}


def _dev(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "dev"), *args], env=env, capture_output=True, text=True, timeout=300
    )


def _answers(kind: str, *urls: str) -> bool:
    probe = [sys.executable, str(ROOT / "tools" / "dev_ready.py"), kind, *urls, "0"]
    return subprocess.run(probe, capture_output=True, timeout=60).returncode == 0


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MONGODB_URL", "BROKER_URL", "REDIS_URL", "RABBITMQ_MANAGEMENT_URL")
    }
    env.update({name: str(port) for name, port in PORTS.items()})
    env["OFFGRID_DEV_STATE"] = str(tmp_path / "state")
    env["OFFGRID_RABBITMQ_NODE"] = "offgrid-devtest@localhost"
    yield env
    _dev(env, "stop")


def test_stop_and_start_twice_leaves_every_service_answering_with_its_data(
    dev_env: dict[str, str],
) -> None:
    mongo = f"mongodb://127.0.0.1:{PORTS['MONGO_PORT']}/devtest"
    for cycle in range(3):
        started = _dev(dev_env, "services")
        assert started.returncode == 0, started.stderr
        assert _answers(
            "rabbitmq",
            f"amqp://guest:guest@127.0.0.1:{PORTS['RABBITMQ_PORT']}//",
            f"http://guest:guest@127.0.0.1:{PORTS['RABBITMQ_MGMT_PORT']}/",
        )
        assert _answers("redis", f"redis://127.0.0.1:{PORTS['REDIS_PORT']}/0")
        with MongoClient(mongo, serverSelectionTimeoutMS=5000) as client:
            if cycle == 0:
                client.devtest.kept.insert_one({"_id": "across restarts"})
            assert client.devtest.kept.count_documents({}) == 1  # the data survived
        stopped = _dev(dev_env, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert not _answers("redis", f"redis://127.0.0.1:{PORTS['REDIS_PORT']}/0")
