"""Server API keys (SPEC §5): `X-API-Key`, stored only as hashes, with scopes.

A key reads `og_<id>_<secret>`. The id addresses the stored record; only the SHA-256 of the
secret is kept (the secret has 256 bits of entropy, so a fast hash is enough) and compared in
constant time. `ADMIN_API_KEY` from the environment is the bootstrap key with every scope.
The API reads keys through a `ReadCache` that revocation invalidates: a revoked key is refused
on the very next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request
from pymongo.database import Database

from api.errors import APIError
from api.resources import cache, db, resources
from sync.readcache import NO_CACHE, ReadCache

API_KEYS = "api_keys"
CACHE_KIND = "key"
SCOPES = ("push:send", "admin")
_KEY = re.compile(r"^og_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
LAST_USED_PRECISION = timedelta(minutes=1)
F = TypeVar("F", bound=Callable[..., Any])


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(db: Database, name: str, scopes: list[str]) -> tuple[str, dict[str, Any]]:
    """Store a new key; return the full key (shown once) and its public record."""
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    doc = {
        "_id": key_id,
        "name": name,
        "scopes": sorted(set(scopes)),
        "hash": _digest(secret),
        "created_at": datetime.now(UTC),
        "last_used": None,
        "revoked_at": None,
    }
    db[API_KEYS].insert_one(doc)
    return f"og_{key_id}_{secret}", public(doc)


def public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("name", "scopes", "created_at", "last_used", "revoked_at")} | {
        "id": doc["_id"]
    }


def list_keys(db: Database) -> list[dict[str, Any]]:
    return [public(d) for d in db[API_KEYS].find({}).sort("created_at", 1)]


def revoke_key(db: Database, key_id: str, cache: ReadCache = NO_CACHE) -> bool:
    """Revoke a key; False when there is no active key of that id. Raises `CacheUnavailable`,
    changing nothing, when the cache cannot be told."""
    with cache.changing(CACHE_KIND, key_id):
        result = db[API_KEYS].update_one(
            {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": datetime.now(UTC)}}
        )
    return result.modified_count == 1


def scopes_of(
    db: Database, presented: str, bootstrap: str, cache: ReadCache = NO_CACHE
) -> tuple[str, list[str]] | None:
    """(key id, scopes) of a presented key, or None when it is not a valid, unrevoked key."""
    if hmac.compare_digest(presented.encode(), bootstrap.encode()):
        return "bootstrap", list(SCOPES)
    match = _KEY.match(presented)
    if match is None:
        return None
    key_id = match.group("id")

    def stored() -> str | None:  # a key that does not exist is not cached
        doc = db[API_KEYS].find_one({"_id": key_id})
        if doc is None:
            return None
        revoked = doc.get("revoked_at") is not None
        used = None if doc.get("last_used") is None else doc["last_used"].timestamp()
        record = {"hash": doc["hash"], "scopes": doc["scopes"], "revoked": revoked, "used": used}
        return json.dumps(record)

    found = cache.get(CACHE_KIND, key_id, "record", stored)
    if found is None:
        return None
    record = json.loads(found)
    if record["revoked"] or not hmac.compare_digest(record["hash"], _digest(match.group("secret"))):
        return None
    now = datetime.now(UTC)
    # `used` is as old as the record (fresh without the cache); recent means no write is due.
    due = record["used"] is None or record["used"] < (now - LAST_USED_PRECISION).timestamp()
    if due and cache.first_in(CACHE_KIND, key_id, "used", LAST_USED_PRECISION):
        db[API_KEYS].update_one(
            {"_id": key_id,
             "$or": [{"last_used": None}, {"last_used": {"$lt": now - LAST_USED_PRECISION}}]},
            {"$set": {"last_used": now}},
        )  # fmt: skip
    return key_id, list(record["scopes"])


def key_of(presented: str) -> tuple[str, list[str]] | None:
    """The id and scopes of a valid, unrevoked key, or None; looked up once per request (the
    rate limiter, which identifies the caller first, and the view share the answer)."""
    if g.get("looked_up_key") != presented:
        g.verified_key = scopes_of(db(), presented, resources().settings.admin_api_key, cache())
        g.looked_up_key = presented
    return g.verified_key  # type: ignore[no-any-return]


def require_api_key(scope: str, *others: str) -> Callable[[F], F]:
    """Accept an `X-API-Key` that holds `scope` (or one of `others`): 401 without a valid key,
    403 without the scope. The view finds the key's id and scopes in `g`."""
    accepted = {scope, *others}

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            presented = request.headers.get("X-API-Key", "")
            if not presented:
                raise APIError(401, "unauthorized", "an X-API-Key header is required")
            found = key_of(presented)
            if found is None:
                raise APIError(401, "unauthorized", "invalid or revoked API key")
            g.api_key_id, scopes = found
            g.api_key_scopes = frozenset(scopes)
            if not accepted & g.api_key_scopes:
                raise APIError(403, "forbidden", f"this API key lacks the {scope!r} scope")
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
