"""The Celery tasks (tasks/), run in this process against the real services, as a worker runs
them after taking a message: what a redelivered message, a batch the API removed and a
housekeeping job already running elsewhere do."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo.database import Database
from redis import Redis

from push import fanout, pushes
from sync import batches
from sync.scopelog import RECORDS
from tests.push_client import register
from workers import celery_app as worker

CACHED = (
    worker.settings,
    worker.collections,
    worker.engine_config,
    worker.redis_client,
    worker.mongo,
)


@pytest.fixture(scope="module")
def task_process(test_env: dict[str, str]) -> Iterator[None]:
    """This process set up as a worker process of the suite (its environment, its database)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in test_env.items():
            patch.setenv(name, value)
        for cached in CACHED:
            cached.cache_clear()
        yield
        for cached in CACHED:
            cached.cache_clear()


def _stored_batch(db: Database, user: str, client_id: str, value: dict[str, Any]) -> str:
    batch_id = uuid.uuid4().hex
    hlc = f"{int(time.time() * 1000):013d}-0000-{client_id}"
    mutation = {
        "id": 1, "scope": f"user:{user}", "collection": "notes", "key": "k1", "op": "put",
        "value": value, "hlc": hlc,
    }  # fmt: skip
    batches.submit_batch(
        db, batch_id=batch_id, user=user, client_id=client_id, mutations=[mutation]
    )
    return batch_id


@pytest.mark.usefixtures("task_process")
def test_a_batch_applied_twice_by_its_task_is_applied_once(db: Database) -> None:
    from tasks.sync import apply_batch

    user, client_id = f"t-{uuid.uuid4().hex[:8]}", f"c{uuid.uuid4().hex[:12]}"
    batch_id = _stored_batch(db, user, client_id, {"title": "once"})
    first = apply_batch(batch_id)
    record = db[RECORDS].find_one({"scope": f"user:{user}", "key": "k1"})
    again = apply_batch(batch_id)  # the message redelivered after the worker died
    assert first == again == {"batch_id": batch_id, "status": "applied"}
    assert db[RECORDS].find_one({"scope": f"user:{user}", "key": "k1"}) == record
    assert record is not None and record["value"] == {"title": "once"}
    status = batches.batch_status(db, batch_id, user)
    assert status is not None and status["results"][0]["status"] == "applied"


@pytest.mark.usefixtures("task_process")
def test_a_batch_the_api_removed_is_reported_missing_and_nothing_is_written(
    db: Database,
) -> None:
    from tasks.sync import apply_batch

    before = db[RECORDS].estimated_document_count()
    missing = uuid.uuid4().hex
    assert apply_batch(missing) == {"batch_id": missing, "status": "missing"}
    assert db[RECORDS].estimated_document_count() == before


@pytest.mark.usefixtures("task_process")
def test_a_housekeeping_job_running_elsewhere_is_skipped(redis_client: Redis) -> None:
    from tasks.maintenance import expire_batches

    elsewhere = redis_client.lock("offgrid:job:expire_batches", timeout=30)
    assert elsewhere.acquire(blocking=False)
    try:
        assert expire_batches() == {"job": "expire_batches", "skipped": True}
    finally:
        elsewhere.release()
    ran = expire_batches()
    assert ran["job"] == "expire_batches" and isinstance(ran["count"], int)


@pytest.mark.usefixtures("task_process")
def test_a_chunk_sent_twice_by_its_task_reaches_each_device_once(
    client: Any, make_token: Any, db: Database, apns_fake: Any
) -> None:
    from tasks.push import send_chunk

    user = f"t-{uuid.uuid4().hex[:8]}"
    tokens = [secrets.token_hex(32) for _ in range(3)]
    for token in tokens:
        register(client, make_token, user, token)
    push_id, _, _ = pushes.create_push(
        db, "test", {"audience": {"users": [user]}, "notification": {"title": "t", "body": "b"}}
    )
    assert fanout.plan_fan_out(db, push_id) == [0]
    first = send_chunk(push_id, 0)
    again = send_chunk(push_id, 0)  # redelivered
    expected = {"push_id": push_id, "chunk": 0, "sent": 3, "failed": 0, "invalid": 0}
    assert first == again == {**expected, "cancelled": 0}
    assert [len(apns_fake.received[token]) for token in tokens] == [1, 1, 1]
