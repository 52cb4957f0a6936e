"""Push → RabbitMQ → real Celery worker → MongoDB → status → pull, end to end."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.database import Database

from sync.batches import BATCHES
from sync.scopelog import RECORDS

pytestmark = pytest.mark.usefixtures("worker")


def test_push_is_queued_then_applied_then_pulled(sync_client: Any) -> None:
    mutations = [
        sync_client.put("t1", {"title": "milk"}, collection="todos"),
        sync_client.put("n1", {"text": "call mum", "tags": ["family"]}),
    ]
    reply = sync_client.push(mutations)
    assert reply.status_code == 202
    body = reply.get_json()
    assert body["status"] == "queued"

    final = sync_client.wait_final(body["batch_id"])
    assert final["status"] == "applied"
    assert final["last_mutation_id"] == 2
    assert [r["status"] for r in final["results"]] == ["applied", "applied"]
    assert all(r["version"] == 1 for r in final["results"])

    pulled = sync_client.pull().get_json()
    assert pulled["last_mutation_id"] == 2
    page = pulled["scopes"][sync_client.scope]
    assert page["has_more"] is False
    assert {(c["collection"], c["key"]): c["value"] for c in page["changes"]} == {
        ("todos", "t1"): {"title": "milk"},
        ("notes", "n1"): {"text": "call mum", "tags": ["family"]},
    }


def test_prefer_wait_returns_the_final_status(sync_client: Any) -> None:
    reply = sync_client.push([sync_client.put("k", {"v": 1})], wait=20)
    assert reply.status_code == 200
    body = reply.get_json()
    assert body["status"] == "applied"
    assert body["results"] == [{"id": 1, "status": "applied", "version": 1}]


def test_pull_from_a_checkpoint_returns_only_later_changes(sync_client: Any) -> None:
    sync_client.push([sync_client.put("a", {"n": 1}), sync_client.put("b", {"n": 1})], wait=20)
    first = sync_client.pull().get_json()["scopes"][sync_client.scope]
    assert {c["key"] for c in first["changes"]} == {"a", "b"}

    sync_client.push([sync_client.put("b", {"n": 2})], wait=20)
    later = sync_client.pull({sync_client.scope: first["checkpoint"]}).get_json()
    changes = later["scopes"][sync_client.scope]["changes"]
    assert changes == [
        {"collection": "notes", "key": "b", "value": {"n": 2}, "deleted": False, "version": 2}
    ]


def test_pull_pages_through_a_scope_without_loss_or_repeat(sync_client: Any) -> None:
    sync_client.push([sync_client.put(f"k{i:02d}", {"i": i}) for i in range(25)], wait=20)
    seen: list[str] = []
    checkpoint = None
    while True:
        page = sync_client.pull({sync_client.scope: checkpoint}, limit=10).get_json()
        scope_page = page["scopes"][sync_client.scope]
        seen += [c["key"] for c in scope_page["changes"]]
        checkpoint = scope_page["checkpoint"]
        if not scope_page["has_more"]:
            break
    assert seen == [f"k{i:02d}" for i in range(25)]


def test_resubmitted_batch_takes_effect_once(sync_client: Any, db: Database) -> None:
    mutations = [sync_client.put("once", {"v": 1})]
    first = sync_client.push(mutations, wait=20).get_json()
    again = sync_client.push(mutations, wait=20).get_json()
    assert first["results"][0]["status"] == "applied"
    assert again["status"] == "applied"
    assert again["results"] == [{"id": 1, "status": "duplicate"}]
    record = db[RECORDS].find_one({"scope": sync_client.scope, "key": "once"})
    assert record["version"] == 1


def test_a_batch_that_skips_ids_fails_with_gap_after_the_gap_timeout(
    sync_client: Any, db: Database
) -> None:
    sync_client.next_id = 3  # ids 1 and 2 were never sent
    body = sync_client.push([sync_client.put("late", {"v": 1})], wait=30).get_json()
    assert body["status"] == "failed"
    assert body["reason"] == "gap"
    assert body["results"][0]["reason"] == "gap"
    assert db[RECORDS].count_documents({"scope": sync_client.scope}) == 0
    assert sync_client.pull().get_json()["last_mutation_id"] == 0


def test_a_batch_waits_past_the_gap_timeout_while_its_predecessor_is_stored(
    sync_client: Any, db: Database, settings: Any, run_maintenance: Any
) -> None:
    """A backlog is not a gap: batch 2 waits however long batch 1 (stored, not applied yet)
    takes, then both apply in id order. Failing batch 2 would lose writes nothing had lost."""
    c = sync_client
    # Batch 1 was accepted but its message was lost an hour ago (as if far back in a queue).
    first = c.store_unpublished(
        db, [c.put("a", {"v": 1})], created_at=datetime.now(UTC) - timedelta(hours=1)
    )
    second = c.push([c.put("b", {"v": 2})]).get_json()["batch_id"]
    time.sleep(settings.gap_timeout_seconds + 2)
    assert c.status(second).get_json()["status"] == "queued"  # still waiting, not failed
    run_maintenance("maintenance.requeue_stuck_batches")  # batch 1 republished
    assert c.wait_final(first)["status"] == "applied"
    final = c.wait_final(second)
    assert final["status"] == "applied"
    assert final["results"] == [{"id": 2, "status": "applied", "version": 1}]
    assert c.pull().get_json()["last_mutation_id"] == 2


def test_batch_status_is_private_to_its_submitter(
    sync_client: Any, client: Any, make_token: Any
) -> None:
    batch_id = sync_client.push([sync_client.put("x", {"v": 1})]).get_json()["batch_id"]
    other = {"Authorization": f"Bearer {make_token('mallory')}"}
    reply = client.get(f"/v1/sync/batches/{batch_id}", headers=other)
    assert reply.status_code == 404
    assert reply.get_json()["error"]["code"] == "not_found"


def test_writing_another_users_scope_is_forbidden_and_stores_nothing(
    sync_client: Any, db: Database
) -> None:
    mutation = sync_client.put("x", {"v": 1})
    mutation["scope"] = "user:someone-else"
    reply = sync_client.push([mutation])
    assert reply.status_code == 403
    assert reply.get_json()["error"]["code"] == "forbidden"
    assert db[BATCHES].count_documents({"client_id": sync_client.client_id}) == 0
    assert db[RECORDS].count_documents({"scope": "user:someone-else"}) == 0


def test_reading_another_users_scope_is_forbidden(sync_client: Any) -> None:
    reply = sync_client.pull({"user:someone-else": None})
    assert reply.status_code == 403
    assert reply.get_json()["error"]["code"] == "forbidden"


def test_a_client_id_belongs_to_one_user(
    sync_client: Any, client: Any, make_token: Any, client_id: str
) -> None:
    sync_client.push([sync_client.put("x", {"v": 1})], wait=20)
    intruder = {"Authorization": f"Bearer {make_token('mallory')}"}
    mutation = {
        "id": 2,
        "scope": "user:mallory",
        "collection": "notes",
        "key": "x",
        "op": "put",
        "value": {"v": 2},
        "hlc": f"1764068000000-0001-{client_id}",
    }
    reply = client.post(
        "/v1/sync/push", json={"client_id": client_id, "mutations": [mutation]}, headers=intruder
    )
    assert reply.status_code == 403
    pulled = client.post(
        "/v1/sync/pull",
        json={"client_id": client_id, "scopes": {"user:mallory": None}},
        headers=intruder,
    )
    assert pulled.status_code == 403


def test_unknown_collection_is_refused_whole(sync_client: Any, db: Database) -> None:
    good = sync_client.put("ok", {"v": 1})
    bad = sync_client.put("no", {"v": 1}, collection="nonexistent")
    reply = sync_client.push([good, bad])
    assert reply.status_code == 400
    error = reply.get_json()["error"]
    assert error["code"] == "unknown_collection"
    assert "todos" in error["details"]["known"]
    assert db[RECORDS].count_documents({"scope": sync_client.scope}) == 0


def test_schema_of_the_collection_is_enforced_per_mutation(sync_client: Any) -> None:
    body = sync_client.push(
        [
            sync_client.put("t1", {"title": ""}, collection="todos"),
            sync_client.put("t2", {"title": "fine"}, collection="todos"),
        ],
        wait=20,
    ).get_json()
    first, second = body["results"]
    assert first["status"] == "rejected"
    assert first["reason"] == "validation"
    assert "title" in first["errors"]
    assert second["status"] == "applied"
    keys = [c["key"] for c in sync_client.pull().get_json()["scopes"][sync_client.scope]["changes"]]
    assert keys == ["t2"]


def test_gzip_request_bodies_are_accepted(sync_client: Any) -> None:
    body = {"client_id": sync_client.client_id, "mutations": [sync_client.put("gz", {"v": 1})]}
    reply = sync_client.http.post(
        "/v1/sync/push",
        data=gzip.compress(json.dumps(body).encode()),
        headers={
            **sync_client.headers,
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
            "Prefer": "wait=20",
        },
    )
    assert reply.status_code == 200
    assert reply.get_json()["results"] == [{"id": 1, "status": "applied", "version": 1}]


def test_a_request_id_follows_the_batch_into_the_worker_logs(sync_client: Any, worker: Any) -> None:
    marker = f"req-{uuid.uuid4().hex}"
    reply = sync_client.http.post(
        "/v1/sync/push",
        json={"client_id": sync_client.client_id, "mutations": [sync_client.put("r", {"v": 1})]},
        headers={**sync_client.headers, "X-Request-ID": marker, "Prefer": "wait=20"},
    )
    assert reply.headers["X-Request-ID"] == marker
    assert reply.status_code == 200
    deadline = time.monotonic() + 10
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not lines:
        for raw in worker.log_path.read_text().splitlines():
            if marker in raw and raw.startswith("{"):
                lines.append(json.loads(raw))
        time.sleep(0.2)
    assert lines, "no worker log line carried the request id"
    assert all(line["request_id"] == marker for line in lines)
