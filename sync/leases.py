"""Redis locks that serialize writers: one per client (G2 order) and one per scope (G3 order).

The engine does not rely on the database to arbitrate concurrent writers (it was designed for
FerretDB 1.24, which had no atomic read-modify-write; docs/embedded-store.md): a batch is
applied only while its worker holds the lease of its client and the lock of every scope it
writes. Names are taken in
one global order (sorted), so two batches can never wait on each other in a cycle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

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
