"""The sync engine's indexes, each defined by the module that owns its collection."""

from __future__ import annotations

from pymongo.database import Database

from sync import batches, membership, scopelog


def ensure_indexes(db: Database) -> None:
    """Create the indexes the sync queries rely on (MongoDB and SecantusDB serve them)."""
    scopelog.ensure_indexes(db)
    membership.ensure_indexes(db)
    batches.ensure_indexes(db)
