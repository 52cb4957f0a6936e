"""A Redis outage (SPEC G7): the API answers (never 500), rate limits still hold per process,
/readyz says Redis is down, and batches accepted meanwhile apply once Redis is back.

The test runs its own redis-server on another port, kills it with SIGKILL and starts it again;
the API and a worker of the test use it, the rest of the suite does not notice.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from api import create_app
from config import Settings, load_settings
from tests.conftest import WorkerProcess
from tests.sync_client import SyncTestClient

PORT = 6391
URL = f"redis://127.0.0.1:{PORT}/0"


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(PORT),
             "--bind", "127.0.0.1", "--dir", str(self.directory), "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if Redis.from_url(URL, socket_connect_timeout=1).ping():
                    return
            except Exception:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    if redis.proc is not None and redis.proc.poll() is None:
        redis.kill()


@pytest.mark.usefixtures("sync_paused")
def test_a_redis_outage_is_never_a_500_and_loses_nothing(
    private_redis: PrivateRedis, test_env: dict[str, str], make_token: Any, user: str
) -> None:
    env = {**test_env, "REDIS_URL": URL}
    settings: Settings = load_settings(env)
    app = create_app(settings)
    limited = create_app(dataclasses.replace(settings, rate_limit_user="12/minute")).test_client()
    worker = WorkerProcess(env, settings, "redis-outage", concurrency=1)
    try:
        c = SyncTestClient(app.test_client(), make_token(user), f"outage-{user}", user)
        assert c.push([c.put("k0", {"n": 0})], wait=20).get_json()["status"] == "applied"
        private_redis.kill()

        accepted = []
        for i in range(1, 4):
            reply = c.push([c.put(f"k{i}", {"n": i})])
            assert reply.status_code == 202, reply.get_data(as_text=True)
            accepted.append(reply.get_json()["batch_id"])
        ready = c.http.get("/readyz")
        assert ready.status_code == 503 and ready.headers["Retry-After"]
        assert ready.get_json()["checks"]["redis"].startswith("unavailable")
        # Limits still hold while Redis is away (counted in this process): soft, not open.
        pull = {"client_id": c.client_id, "scopes": {c.scope: None}}
        codes = [limited.post("/v1/sync/pull", json=pull, headers=c.headers).status_code
                 for _ in range(14)]  # fmt: skip
        assert set(codes) == {200, 429}, codes

        private_redis.start()
        finals = [c.wait_final(batch_id, timeout=60) for batch_id in accepted]
        assert [f["status"] for f in finals] == ["applied"] * 3
        records, _ = c.pull_all()
        assert {k: r["value"]["n"] for (_, k), r in records.items()} == {
            f"k{i}": i for i in range(4)
        }
        assert {r["version"] for r in records.values()} == {1}
    finally:
        worker.stop()
