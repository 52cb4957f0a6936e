"""Pull: the latest state of every record changed after a checkpoint, in server order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database

from sync.checkpoint import Checkpoint
from sync.store import CLIENTS, RECORDS


def pull_scope(
    db: Database,
    scope: str,
    checkpoint: str | None,
    collections: list[str] | None,
    limit: int,
) -> dict[str, Any]:
    """One page of one scope. A `None` checkpoint is an initial sync: live records only."""
    query: dict[str, Any] = {"scope": scope}
    start = Checkpoint.decode(checkpoint) if checkpoint is not None else None
    if start is not None:
        query["seq"] = {"$gt": start.seq}
    else:
        query["deleted"] = False
    if collections:
        query["collection"] = {"$in": collections}

    docs = list(
        db[RECORDS]
        .find(query, {"collection": 1, "key": 1, "value": 1, "deleted": 1, "version": 1, "seq": 1})
        .sort("seq", ASCENDING)
        .limit(limit + 1)
    )
    has_more = len(docs) > limit
    docs = docs[:limit]
    position = docs[-1]["seq"] if docs else (start.seq if start else 0)
    return {
        "changes": [
            {
                "collection": d["collection"],
                "key": d["key"],
                "value": None if d["deleted"] else d["value"],
                "deleted": d["deleted"],
                "version": d["version"],
            }
            for d in docs
        ],
        "checkpoint": Checkpoint(position).encode(),
        "has_more": has_more,
    }


def last_mutation_id(db: Database, client_id: str) -> int:
    ledger = db[CLIENTS].find_one({"_id": client_id}, {"last_mutation_id": 1})
    return int(ledger["last_mutation_id"]) if ledger else 0


def pull(
    db: Database,
    *,
    client_id: str,
    scopes: Mapping[str, str | None],
    collections: list[str] | None,
    limit: int,
) -> dict[str, Any]:
    # Read the ledger first: every effect it acknowledges is already in the records read next.
    acknowledged = last_mutation_id(db, client_id)
    return {
        "scopes": {
            scope: pull_scope(db, scope, cp, collections, limit) for scope, cp in scopes.items()
        },
        "last_mutation_id": acknowledged,
    }
