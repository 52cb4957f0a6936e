"""Redis locks that serialize writers: one per client (G2 order) and one per scope (G3 order).

The engine does not rely on the database to arbitrate concurrent writers (it was designed for
FerretDB 1.24, which had no atomic read-modify-write; docs/embedded-store.md): a batch is
applied only while its worker holds the lease of its client and the lock of every scope it
writes. Names are taken in
one global order (sorted), so two batches can never wait on each other in a cycle.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo.collection import Collection
from redis import Redis
from redis.exceptions import LockError
from redis.lock import Lock


class LeaseUnavailable(Exception):
    """Another worker holds one of the locks; try again shortly."""


class LeaseLost(Exception):
    """A lock expired while its holder was still working; nothing may be committed."""


@contextmanager
def held(redis: Redis, names: list[str], ttl: float, wait: float) -> Iterator[list[Lock]]:
    locks: list[Lock] = []
    try:
        for name in sorted(set(names)):
            lock = redis.lock(
                f"offgrid:lock:{name}", timeout=ttl, blocking_timeout=wait, thread_local=False
            )
            if not lock.acquire():
                raise LeaseUnavailable(name)
            locks.append(lock)
        yield locks
    finally:
        for lock in reversed(locks):
            # A lock that expired is left alone: whoever holds it now keeps it.
            with contextlib.suppress(LockError):
                lock.release()


def refresh(locks: list[Lock]) -> None:
    """Restart every lock's time to live; raise `LeaseLost` if one already expired."""
    for lock in locks:
        try:
            lock.reacquire()
        except LockError:
            raise LeaseLost(lock.name) from None


def ensure_held(locks: list[Lock]) -> None:
    """Raise `LeaseLost` unless every lock is still ours; call right before committing."""
    for lock in locks:
        if not lock.owned():
            raise LeaseLost(lock.name)


def take_fence(
    collection: Collection, doc_id: str, on_insert: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Increment the document's `fence` (its writer token) and return the document as that
    increment left it; None if it does not exist (and `on_insert` is None).

    An update then a read, not one `find_one_and_update`: SecantusDB 0.7.0b3 serves
    findAndModify by scanning the whole collection, even by `_id` (41 ms at 8,000 documents
    against 0.7 ms for an update; docs/embedded-store.md). The same update stamps a mark of
    ours, so the read can tell whether another taker incremented after us (then we have lost
    the document already: `LeaseLost`)."""
    mark = uuid.uuid4().hex
    update: dict[str, Any] = {"$inc": {"fence": 1}, "$set": {"fence_mark": mark}}
    if on_insert:
        update["$setOnInsert"] = on_insert
    collection.update_one({"_id": doc_id}, update, upsert=on_insert is not None)
    doc = collection.find_one({"_id": doc_id})
    if doc is None:
        return None
    if doc.get("fence_mark") != mark:
        raise LeaseLost(f"{collection.name}:{doc_id} (taken by a newer writer)")
    return doc
