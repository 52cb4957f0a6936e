"""Fixtures for tests against the real services that `./dev test` starts.

The tests get their own RabbitMQ vhost, MongoDB database and Redis db, so a running dev stack
is not disturbed, and a real Celery worker in a subprocess consumes from that vhost.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pymongo import MongoClient
from pymongo.database import Database
from redis import Redis

from api import create_app
from config import Settings, load_settings
from workers.factory import create_celery, worker_argv

ROOT = Path(__file__).resolve().parent.parent
# Two runs on one machine at once (say, a CI job beside a developer's) each need their own:
# OFFGRID_TEST_NAMESPACE and OFFGRID_TEST_REDIS_DB name them.
TEST_VHOST = TEST_DATABASE = os.environ.get("OFFGRID_TEST_NAMESPACE", "offgrid_test")
TEST_REDIS_DB = os.environ.get("OFFGRID_TEST_REDIS_DB", "15")


def _service_url(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the suite with ./dev test", returncode=2)
    return value


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def _reset_vhost(management_url: str, vhost: str) -> None:
    parts = urlsplit(management_url)
    base = f"{parts.scheme}://{parts.hostname}:{parts.port}/api"
    auth = (parts.username or "guest", parts.password or "guest")
    with httpx.Client(auth=auth, timeout=30) as http:
        http.delete(f"{base}/vhosts/{vhost}")
        http.put(f"{base}/vhosts/{vhost}").raise_for_status()
        permission = {"configure": ".*", "write": ".*", "read": ".*"}
        http.put(f"{base}/permissions/{vhost}/{auth[0]}", json=permission).raise_for_status()


@pytest.fixture(scope="session")
def management_url() -> str:
    return _service_url("RABBITMQ_MANAGEMENT_URL")


@pytest.fixture(scope="session")
def webpush_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.fakes.webpush import WebPushFake

    fake = WebPushFake(tmp_path_factory.mktemp("webpush"))
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def apns_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.fakes.apns import APNsFake

    fake = APNsFake(tmp_path_factory.mktemp("apns"))
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def fcm_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.fakes.fcm import FCMFake

    fake = FCMFake(tmp_path_factory.mktemp("fcm"))
    yield fake
    fake.close()


def _vapid_private_key() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.fakes.webpush import b64url

    number = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
    return b64url(number.to_bytes(32, "big"))


@pytest.fixture(scope="session")
def test_env(
    management_url: str, webpush_fake: Any, apns_fake: Any, fcm_fake: Any
) -> dict[str, str]:
    """The environment every test process (API, workers) runs with."""
    _reset_vhost(management_url, TEST_VHOST)
    env = {
        "MONGODB_URL": _with_path(_service_url("MONGODB_URL"), f"/{TEST_DATABASE}"),
        "BROKER_URL": _with_path(_service_url("BROKER_URL"), f"/{TEST_VHOST}"),
        "REDIS_URL": _with_path(_service_url("REDIS_URL"), f"/{TEST_REDIS_DB}"),
        "JWT_SECRET": secrets.token_urlsafe(32),
        "ADMIN_API_KEY": secrets.token_urlsafe(32),
        "RABBITMQ_MANAGEMENT_URL": management_url,
        "LOG_LEVEL": "INFO",
        # Short enough that the gap tests finish quickly, long enough for out-of-order arrivals.
        "GAP_TIMEOUT": "4",
        "OFFGRID_FAULT_INJECTION": "1",
        # A killed worker's locks expire after this; the fault-injection tests wait for it.
        "LOCK_TTL": "3",
        # The suite's own bursts (pull loops, many 401 checks) must not trip the limits;
        # tests/api/test_limits.py checks them with an app of its own.
        "RATE_LIMIT_USER": "100000/minute",
        "RATE_LIMIT_KEY": "100000/minute",
        "RATE_LIMIT_ANONYMOUS": "100000/minute",
        # Web Push goes to the local fake service, over TLS signed by its throwaway CA.
        "VAPID_PRIVATE_KEY": _vapid_private_key(),
        "VAPID_SUBJECT": "mailto:ops@offgrid.test",
        "WEBPUSH_CA_FILE": str(webpush_fake.ca_file),
        # APNs and FCM go to local fakes speaking their protocols (HTTP/2, TLS, real tokens).
        **apns_fake.env(),
        **fcm_fake.env(),
    }
    return env


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str]) -> Settings:
    return load_settings(test_env)


@pytest.fixture(scope="session")
def db(settings: Settings) -> Iterator[Database]:
    client: MongoClient = MongoClient(settings.mongodb_url, tz_aware=True)
    client.drop_database(settings.mongodb_database)
    yield client[settings.mongodb_database]
    client.close()


@pytest.fixture(scope="session")
def redis_client(settings: Settings) -> Iterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    client.flushdb()
    yield client
    client.close()


def _wait_for_workers(settings: Settings, names: list[str], proc: subprocess.Popen) -> None:
    celery = create_celery(settings)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode} before it was ready")
        replies = celery.control.ping(timeout=1.0, destination=names)
        if {name for reply in replies for name in reply} >= set(names):
            return
    raise RuntimeError("worker did not answer a ping within 90 s")


class WorkerProcess:
    """A real `celery worker` subprocess consuming the test vhost's queues."""

    def __init__(
        self, env: dict[str, str], settings: Settings, name: str, concurrency: int = 2
    ) -> None:
        self.name = f"{name}@{os.uname().nodename}"
        self.log_path = ROOT / ".dev" / "log" / f"test-worker-{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            worker_argv(sys.executable, self.name, "-c", str(concurrency), "--loglevel", "INFO"),
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_for_workers(settings, [self.name], self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


@pytest.fixture(scope="session")
def worker(test_env: dict[str, str], settings: Settings, db: Database) -> Iterator[WorkerProcess]:
    process = WorkerProcess(test_env, settings, "test-worker")
    yield process
    process.stop()


@contextmanager
def _consumer_paused(settings: Settings, worker: WorkerProcess, queue: str) -> Iterator[None]:
    control = create_celery(settings).control
    control.cancel_consumer(queue, destination=[worker.name], reply=True)
    yield
    control.add_consumer(queue, destination=[worker.name], reply=True)


@pytest.fixture
def sync_paused(settings: Settings, worker: WorkerProcess) -> Iterator[None]:
    """The suite's shared worker stops consuming `sync` for the test, so the batches go to the
    worker the test controls; it consumes again afterwards."""
    with _consumer_paused(settings, worker, "sync"):
        yield


@pytest.fixture
def maintenance_paused(settings: Settings, worker: WorkerProcess) -> Iterator[None]:
    """The same for the `maintenance` queue: the housekeeping jobs go to the test's worker."""
    with _consumer_paused(settings, worker, "maintenance"):
        yield


@pytest.fixture(scope="session")
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_token(settings: Settings) -> Any:
    def make(sub: str, **claims: Any) -> str:
        payload = {"sub": sub, "exp": int(time.time()) + 600, **claims}
        return jwt.encode(payload, settings.jwt_secret, algorithm="HS256")

    return make


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def auth(make_token: Any, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


@pytest.fixture
def client_id() -> str:
    return f"device-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sync_client(client: FlaskClient, make_token: Any, user: str, client_id: str) -> Any:
    from tests.sync_client import SyncTestClient

    return SyncTestClient(client, make_token(user), client_id, user)


@pytest.fixture
def new_client(client: FlaskClient, make_token: Any) -> Any:
    """Make another app install: `new_client(user=None)`, a fresh user unless one is given."""
    from tests.sync_client import SyncTestClient

    def make(user: str | None = None) -> SyncTestClient:
        user = user or f"user-{uuid.uuid4().hex[:12]}"
        return SyncTestClient(client, make_token(user), f"device-{uuid.uuid4().hex[:12]}", user)

    return make


@pytest.fixture
def shared_members(new_client: Any, admin: dict[str, str]) -> Any:
    """Make `count` installs of new users, all writers of one new shared scope (their `scope`)."""

    def make(count: int) -> list[Any]:
        members = [new_client() for _ in range(count)]
        scope = f"team:{members[0].user}"
        for member in members:
            member.scope = scope
            reply = member.http.put(
                f"/v1/admin/scopes/{scope}/members/{member.user}",
                json={"role": "writer"},
                headers=admin,
            )
            assert reply.status_code in (200, 201)
        return members

    return make


@pytest.fixture
def run_maintenance(settings: Settings) -> Any:
    """Run a housekeeping job now, as beat would, on a real worker; return its result."""
    celery = create_celery(settings)

    def run(task: str) -> dict[str, Any]:
        sent = celery.send_task(task, queue="maintenance", routing_key="maintenance")
        return sent.get(timeout=60)

    return run


@pytest.fixture
def admin(settings: Settings) -> dict[str, str]:
    return {"X-API-Key": settings.admin_api_key}
