"""Who may read and write a scope (G6).

Every user owns their personal scope `user:<sub>`. Shared scopes (`<kind>:<id>`) have members
with role `reader` (pull) or `writer` (pull and push), managed through the admin API. Checks
read the membership on every request and again when a batch is applied, so losing membership
takes effect at once.
"""

from __future__ import annotations

import re
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database

MEMBERS = "sync_members"
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


def role_of(db: Database, user: str, scope: str) -> str | None:
    if scope == personal_scope(user):
        return "owner"
    if is_personal(scope):
        return None
    doc = db[MEMBERS].find_one({"_id": member_id(scope, user)}, {"role": 1})
    return None if doc is None else doc["role"]


def can_read(db: Database, user: str, scope: str) -> bool:
    return role_of(db, user, scope) is not None


def can_write(db: Database, user: str, scope: str) -> bool:
    return role_of(db, user, scope) in ("owner", "writer")


def set_member(db: Database, scope: str, user: str, role: str) -> bool:
    """Add or change a member; True when the member is new."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    result = db[MEMBERS].replace_one(
        {"_id": member_id(scope, user)},
        {"_id": member_id(scope, user), "scope": scope, "user": user, "role": role},
        upsert=True,
    )
    return result.upserted_id is not None


def remove_member(db: Database, scope: str, user: str) -> bool:
    return db[MEMBERS].delete_one({"_id": member_id(scope, user)}).deleted_count == 1


def list_members(db: Database, scope: str) -> list[dict[str, Any]]:
    docs = db[MEMBERS].find({"scope": scope}, {"user": 1, "role": 1}).sort("user", ASCENDING)
    return [{"user": d["user"], "role": d["role"]} for d in docs]


def ensure_indexes(db: Database) -> None:
    db[MEMBERS].create_index([("scope", ASCENDING), ("user", ASCENDING)], name="scope_user")
