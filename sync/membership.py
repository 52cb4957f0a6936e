"""Who may read and write a scope (G6).

Every user owns their personal scope `user:<sub>`. Shared scopes (`<kind>:<id>`) have members
with role `reader` (pull) or `writer` (pull and push), managed through the admin API. The API
reads roles through a `ReadCache` that every change invalidates, so losing membership takes
effect on the very next request; the worker reads MongoDB again when it applies a batch.
"""

from __future__ import annotations

import re
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database

from sync.readcache import NO_CACHE, ReadCache

MEMBERS = "sync_members"
CACHE_KIND = "scope"
_NO_ROLE = "-"  # cached too: a non-member asking again costs no read either
ROLES = ("reader", "writer")
MAX_ID_CHARS = 200
# A shared scope is `<kind>:<id>`. Its id may not hold `|`, so a membership id
# `<scope>|<user>` splits at its first `|`; a personal scope's id is a user id, which may.
SCOPE_KIND = r"[a-z][a-z0-9_-]{0,31}"
SHARED_SCOPE_PATTERN = re.compile(rf"^{SCOPE_KIND}:[^\s\x00-\x1f|]{{1,{MAX_ID_CHARS}}}$")


def is_user_id(value: str) -> bool:
    """A user id is a JWT `sub`: 1-200 printable characters without whitespace; `|` is
    allowed (Auth0's `auth0|…`)."""
    return (
        0 < len(value) <= MAX_ID_CHARS
        and value.isprintable()
        and not any(c.isspace() for c in value)
    )


def is_scope(value: str) -> bool:
    """`user:<user id>` (personal) or `<kind>:<id>` (shared)."""
    if is_personal(value):
        return is_user_id(value[len("user:") :])
    return SHARED_SCOPE_PATTERN.match(value) is not None


def personal_scope(user: str) -> str:
    return f"user:{user}"


def is_personal(scope: str) -> bool:
    return scope.startswith("user:")


def members_of(db: Database, scope: str) -> list[str]:
    """The users of a scope: its owner for a personal scope, else its members."""
    if is_personal(scope):
        return [scope[len("user:") :]]
    return [member["user"] for member in list_members(db, scope)]


def member_id(scope: str, user: str) -> str:
    return f"{scope}|{user}"


def role_of(db: Database, user: str, scope: str, cache: ReadCache = NO_CACHE) -> str | None:
    if scope == personal_scope(user):
        return "owner"
    if is_personal(scope):
        return None

    def stored() -> str:
        doc = db[MEMBERS].find_one({"_id": member_id(scope, user)}, {"role": 1})
        return _NO_ROLE if doc is None else str(doc["role"])

    role = cache.get(CACHE_KIND, scope, user, stored)
    return None if role == _NO_ROLE else role


def can_read(db: Database, user: str, scope: str, cache: ReadCache = NO_CACHE) -> bool:
    return role_of(db, user, scope, cache) is not None


def can_write(db: Database, user: str, scope: str, cache: ReadCache = NO_CACHE) -> bool:
    return role_of(db, user, scope, cache) in ("owner", "writer")


def set_member(db: Database, scope: str, user: str, role: str, cache: ReadCache = NO_CACHE) -> bool:
    """Add or change a member; True when the member is new. Raises `CacheUnavailable`,
    changing nothing, when the cache cannot be told."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    with cache.changing(CACHE_KIND, scope):
        result = db[MEMBERS].replace_one(
            {"_id": member_id(scope, user)},
            {"_id": member_id(scope, user), "scope": scope, "user": user, "role": role},
            upsert=True,
        )
    return result.upserted_id is not None


def remove_member(db: Database, scope: str, user: str, cache: ReadCache = NO_CACHE) -> bool:
    """Remove a member; False when they were none. Raises `CacheUnavailable` like
    `set_member`."""
    with cache.changing(CACHE_KIND, scope):
        return db[MEMBERS].delete_one({"_id": member_id(scope, user)}).deleted_count == 1


def list_members(db: Database, scope: str) -> list[dict[str, Any]]:
    docs = db[MEMBERS].find({"scope": scope}, {"user": 1, "role": 1}).sort("user", ASCENDING)
    return [{"user": d["user"], "role": d["role"]} for d in docs]


def ensure_indexes(db: Database) -> None:
    db[MEMBERS].create_index([("scope", ASCENDING), ("user", ASCENDING)], name="scope_user")
