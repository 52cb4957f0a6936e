"""Pull: the latest state of every record changed after a checkpoint, in server order, and the
highest of the client's mutation ids whose effects the client then holds (G4b)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.database import Database

from sync.batches import CLIENTS
from sync.checkpoint import Checkpoint
from sync.scopelog import Page, SharedReads, read_page, writers_in_flight


class ResyncRequired(Exception):
    """The checkpoint is older than the tombstone horizon: the client must sync from scratch."""


class ForeignClient(Exception):
    """The client id is bound to another user (it pushed as them first)."""


def last_mutation_id(db: Database, client_id: str, user: str) -> int:
    """The client's ledger, read with its binding in one read: refused to any other user."""
    ledger = db[CLIENTS].find_one({"_id": client_id}, {"last_mutation_id": 1, "user": 1})
    if ledger is None:
        return 0
    if ledger.get("user") not in (None, user):
        raise ForeignClient(client_id)
    return int(ledger.get("last_mutation_id", 0))


def _start(checkpoint: str | None, now_ms: int, horizon_seconds: int, scope: str) -> Checkpoint:
    if checkpoint is None:
        return Checkpoint(0, now_ms)
    start = Checkpoint.decode(checkpoint)
    if now_ms - start.issued_ms > horizon_seconds * 1000:
        raise ResyncRequired(scope)
    return start


def _acknowledged(
    db: Database, client_id: str, ledger: int, floor: int, pages: Mapping[str, Page]
) -> int:
    """The `last_mutation_id` this pull may report (G4b): never above what the pages carry.

    `ledger` was read before any page. Its effects were committed before it moved, so a page
    read to its scope's watermark holds them, and a pull whose every scope reached
    `has_more: false` may report the ledger, except for mutations whose record a commit in
    progress has re-stamped above the watermark (not visible yet). A page with more to come may
    stop short of the client's effects, so until the chain is complete the pull reports
    `floor`, what the chain already reported, and so never less than before.
    """
    if ledger <= floor or any(page.has_more for page in pages.values()):
        return floor
    safe = ledger
    prefix = f"{client_id}:"
    for scope, page in pages.items():
        for ref in writers_in_flight(db, scope, page.watermark):
            if ref.startswith(prefix):
                mutation_id = int(ref[len(prefix) :])
                if mutation_id > floor:
                    safe = min(safe, mutation_id - 1)
    return max(safe, floor)


def _changes(page: Page) -> list[dict[str, Any]]:
    return [
        {
            "collection": d["collection"],
            "key": d["key"],
            "value": None if d["deleted"] else d["value"],
            "deleted": d["deleted"],
            "version": d["version"],
        }
        for d in page.records
    ]


def pull(
    db: Database,
    *,
    client_id: str,
    user: str,
    scopes: Mapping[str, str | None],
    collections: list[str] | None,
    limit: int,
    now_ms: int,
    horizon_seconds: int,
    keep_unmoved: bool = False,
    shared: SharedReads | None = None,
) -> dict[str, Any]:
    """One page of each scope. A `None` checkpoint is an initial sync: live records only.
    `keep_unmoved` hands back a scope's own checkpoint when nothing moved (a live pull answers
    "the same checkpoints" for scopes with nothing new); `shared` lets pulls woken by the same
    commit share their page reads."""
    # Read the ledger first: the effects it acknowledges were committed before it moved.
    ledger = last_mutation_id(db, client_id, user)
    starts = {scope: _start(cp, now_ms, horizon_seconds, scope) for scope, cp in scopes.items()}
    pages = {
        scope: read_page(
            db,
            scope,
            after_seq=start.seq,
            limit=limit,
            collections=collections,
            live_only=scopes[scope] is None,
            shared=shared,
        )
        for scope, start in starts.items()
    }
    floor = min(ledger, max(start.acknowledged for start in starts.values()))
    acknowledged = _acknowledged(db, client_id, ledger, floor, pages)

    def checkpoint(scope: str, page: Page) -> str:
        given, start = scopes[scope], starts[scope]
        unmoved = (page.position, acknowledged) == (start.seq, start.acknowledged)
        # A live pull hands an unmoved scope its own checkpoint back, unless that was issued
        # over half the tombstone horizon ago: a quiet scope pulled live for weeks must not
        # end in 410 for a checkpoint that only aged.
        fresh = now_ms - start.issued_ms < horizon_seconds * 500
        if keep_unmoved and given is not None and unmoved and fresh:
            return given
        return Checkpoint(page.position, now_ms, acknowledged).encode()

    return {
        "scopes": {
            scope: {
                "changes": _changes(page),
                "checkpoint": checkpoint(scope, page),
                "has_more": page.has_more,
            }
            for scope, page in pages.items()
        },
        "last_mutation_id": acknowledged,
    }
