"""Pull: the latest state of every record changed after a checkpoint, in server order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.database import Database

from sync.batches import CLIENTS
from sync.checkpoint import Checkpoint
from sync.scopelog import read_page


class ResyncRequired(Exception):
    """The checkpoint is older than the tombstone horizon: the client must sync from scratch."""


def pull_scope(
    db: Database,
    scope: str,
    checkpoint: str | None,
    collections: list[str] | None,
    limit: int,
    now_ms: int,
    horizon_seconds: int,
) -> dict[str, Any]:
    """One page of one scope. A `None` checkpoint is an initial sync: live records only."""
    start = Checkpoint.decode(checkpoint) if checkpoint is not None else None
    if start is not None and now_ms - start.issued_ms > horizon_seconds * 1000:
        raise ResyncRequired(scope)
    docs, position, has_more = read_page(
        db,
        scope,
        after_seq=start.seq if start else 0,
        limit=limit,
        collections=collections,
        live_only=start is None,
    )
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
        "checkpoint": Checkpoint(position, now_ms).encode(),
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
    now_ms: int,
    horizon_seconds: int,
) -> dict[str, Any]:
    # Read the ledger first: the effects it acknowledges were committed before it moved (G4b).
    acknowledged = last_mutation_id(db, client_id)
    return {
        "scopes": {
            scope: pull_scope(db, scope, cp, collections, limit, now_ms, horizon_seconds)
            for scope, cp in scopes.items()
        },
        "last_mutation_id": acknowledged,
    }
