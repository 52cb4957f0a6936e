"""Sync batches: accepting a client's batch and applying its mutations exactly once, in order.

A batch is stored in MongoDB when the API accepts it; the queue message carries only its id.
`apply_batch` may run more than once for the same batch (redelivery, a worker killed midway):
each step is written so that running it again has no further effect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from sync.collections import CollectionRegistry
from sync.store import BATCHES, CLIENTS, RECORDS, SCOPE_SEQUENCES

QUEUED, APPLYING, APPLIED, FAILED = "queued", "applying", "applied", "failed"
FINAL_STATUSES = (APPLIED, FAILED)


class ClientOwnedByAnotherUser(Exception):
    """The client_id is already registered to a different user."""


def record_id(scope: str, collection: str, key: str) -> str:
    # Collection names and keys cannot contain "|", so the id splits unambiguously from the right.
    return f"{scope}|{collection}|{key}"


def claim_client(db: Database, client_id: str, user: str) -> None:
    """Bind `client_id` to `user` on first use; refuse it to any other user afterwards."""
    # Two first pushes may race to insert; the loser's DuplicateKeyError changes nothing.
    with contextlib.suppress(DuplicateKeyError):
        db[CLIENTS].update_one(
            {"_id": client_id},
            {"$setOnInsert": {"user": user, "last_mutation_id": 0}},
            upsert=True,
        )
    if client_owner(db, client_id) != user:
        raise ClientOwnedByAnotherUser(client_id)


def client_owner(db: Database, client_id: str) -> str | None:
    doc = db[CLIENTS].find_one({"_id": client_id}, {"user": 1})
    return None if doc is None else doc["user"]


def submit_batch(
    db: Database,
    *,
    batch_id: str,
    user: str,
    client_id: str,
    mutations: Sequence[dict[str, Any]],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store a validated batch as `queued`; the caller then publishes its id."""
    claim_client(db, client_id, user)
    now = now or datetime.now(UTC)
    doc = {
        "_id": batch_id,
        "user": user,
        "client_id": client_id,
        "status": QUEUED,
        "mutations": list(mutations),
        "results": [],
        "last_mutation_id": None,
        "created_at": now,
        "updated_at": now,
    }
    db[BATCHES].insert_one(doc)
    return doc


def forget_batch(db: Database, batch_id: str) -> None:
    """Remove a batch that could not be queued, so nothing refers to it."""
    db[BATCHES].delete_one({"_id": batch_id, "status": QUEUED})


def batch_status(db: Database, batch_id: str, user: str) -> dict[str, Any] | None:
    """The batch as its submitter sees it; None for unknown ids and other users' batches."""
    doc = db[BATCHES].find_one({"_id": batch_id, "user": user})
    return None if doc is None else status_view(doc)


def status_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "batch_id": doc["_id"],
        "status": doc["status"],
        "last_mutation_id": doc.get("last_mutation_id"),
        "results": doc.get("results", []),
    }


def _next_seq(db: Database, scope: str) -> int:
    counter = db[SCOPE_SEQUENCES].find_one_and_update(
        {"_id": scope},
        {"$inc": {"seq": 1}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    return int(counter["seq"])


def _apply_put(db: Database, client_id: str, mutation: dict[str, Any], now: datetime) -> int:
    """Set the record to the mutation's value; return its version. Idempotent per mutation."""
    scope, collection, key = mutation["scope"], mutation["collection"], mutation["key"]
    writer = f"{client_id}:{mutation['id']}"
    rid = record_id(scope, collection, key)
    try:
        record = db[RECORDS].find_one_and_update(
            {"_id": rid, "writer": {"$ne": writer}},
            {
                "$set": {
                    "scope": scope,
                    "collection": collection,
                    "key": key,
                    "value": mutation["value"],
                    "deleted": False,
                    "hlc": mutation["hlc"],
                    "writer": writer,
                    "seq": _next_seq(db, scope),
                    "updated_at": now,
                },
                "$inc": {"version": 1},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError:
        # The record exists and its latest write is this very mutation: a replay after a crash.
        record = db[RECORDS].find_one({"_id": rid})
    return int(record["version"])


def _apply_mutation(
    db: Database,
    collections: CollectionRegistry,
    client_id: str,
    mutation: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Apply one mutation and return its result entry."""
    spec = collections.get(mutation["collection"])
    if spec is None:  # the configuration changed after the batch was accepted
        return {"id": mutation["id"], "status": "rejected", "reason": "unknown_collection"}
    errors = spec.validation_errors(mutation["value"])
    if errors:
        return {
            "id": mutation["id"],
            "status": "rejected",
            "reason": "validation",
            "errors": errors,
        }
    version = _apply_put(db, client_id, mutation, now)
    return {"id": mutation["id"], "status": "applied", "version": version}


def apply_batch(
    db: Database, batch_id: str, collections: CollectionRegistry, now: datetime | None = None
) -> dict[str, Any]:
    """Apply a queued batch and return its final status. Safe to run again for the same id."""
    now = now or datetime.now(UTC)
    batch = db[BATCHES].find_one_and_update(
        {"_id": batch_id, "status": {"$in": [QUEUED, APPLYING]}},
        {"$set": {"status": APPLYING, "updated_at": now}},
        return_document=ReturnDocument.AFTER,
    )
    if batch is None:
        existing = db[BATCHES].find_one({"_id": batch_id})
        if existing is None:
            raise LookupError(f"batch {batch_id} does not exist")
        return status_view(existing)  # already final: a duplicate delivery

    client_id = batch["client_id"]
    ledger = db[CLIENTS].find_one({"_id": client_id}) or {}
    last = int(ledger.get("last_mutation_id", 0))
    results: list[dict[str, Any]] = []
    failure: str | None = None
    for mutation in batch["mutations"]:
        mid = mutation["id"]
        if mid <= last:
            results.append({"id": mid, "status": "duplicate"})
            continue
        if mid != last + 1:
            failure = "gap"
            results.append({"id": mid, "status": "rejected", "reason": "gap"})
            continue
        result = _apply_mutation(db, collections, client_id, mutation, now)
        # Advance the ledger only forwards: a replay never moves it back.
        db[CLIENTS].update_one(
            {"_id": client_id, "last_mutation_id": {"$lt": mid}},
            {"$set": {"last_mutation_id": mid}},
        )
        last = mid
        results.append(result)

    final = {
        "status": FAILED if failure else APPLIED,
        "results": results,
        "last_mutation_id": last,
        "updated_at": datetime.now(UTC),
    }
    if failure:
        final["reason"] = failure
    db[BATCHES].update_one({"_id": batch_id}, {"$set": final})
    return status_view({**batch, **final})
