"""Membership and API keys are read through a Redis cache (issue 17); a change made through the
admin API or the key CLI takes effect on the very next request, and a change Redis cannot be
told of is refused with nothing changed."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from pymongo.database import Database

from api import create_app
from api.keys import API_KEYS
from config import Settings
from sync.membership import MEMBERS, member_id

AWAY = "redis://127.0.0.1:1/0"  # nothing listens there: every Redis call fails at once


def _role(client: FlaskClient, admin: dict[str, str], scope: str, user: str, role: str) -> None:
    reply = client.put(
        f"/v1/admin/scopes/{scope}/members/{user}", json={"role": role}, headers=admin
    )
    assert reply.status_code in (200, 201), reply.get_json()


def test_a_removed_member_is_refused_on_the_very_next_pull_and_push(
    client: FlaskClient, admin: dict[str, str], new_client: Any
) -> None:
    member = new_client()
    member.scope = f"team:{member.user}"
    _role(client, admin, member.scope, member.user, "writer")
    for _ in range(3):  # read and read again: the role is cached now
        assert member.pull().status_code == 200
    assert member.push([member.put("k", {"n": 1})]).status_code == 202

    removed = client.delete(f"/v1/admin/scopes/{member.scope}/members/{member.user}", headers=admin)
    assert removed.status_code == 204
    assert member.pull().status_code == 403
    refused = member.push([member.put("k", {"n": 2})])
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"


def test_a_role_change_takes_effect_on_the_very_next_request(
    client: FlaskClient, admin: dict[str, str], new_client: Any
) -> None:
    member = new_client()
    member.scope = f"team:{member.user}"
    assert member.pull().status_code == 403  # not a member yet: cached as such
    _role(client, admin, member.scope, member.user, "reader")
    assert member.pull().status_code == 200
    assert member.push([member.put("k", {"n": 1})]).status_code == 403
    _role(client, admin, member.scope, member.user, "writer")
    assert member.push([member.put("k", {"n": 1})]).status_code == 202
    _role(client, admin, member.scope, member.user, "reader")
    assert member.push([member.put("k", {"n": 2})]).status_code == 403


def _create_key(app: Flask, scope: str) -> str:
    result = app.test_cli_runner().invoke(args=["keys", "create", "cached", "--scope", scope])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[0]


def test_a_revoked_key_is_refused_on_the_very_next_request(app: Flask, client: FlaskClient) -> None:
    key = _create_key(app, "admin")
    members = "/v1/admin/scopes/team:cached/members"
    for _ in range(3):
        assert client.get(members, headers={"X-API-Key": key}).status_code == 200
    revoked = app.test_cli_runner().invoke(args=["keys", "revoke", key.split("_")[1]])
    assert revoked.exit_code == 0, revoked.output
    refused = client.get(members, headers={"X-API-Key": key})
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"


def test_a_wrong_secret_for_a_cached_key_is_refused(app: Flask, client: FlaskClient) -> None:
    key = _create_key(app, "admin")
    members = "/v1/admin/scopes/team:cached/members"
    assert client.get(members, headers={"X-API-Key": key}).status_code == 200
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert client.get(members, headers={"X-API-Key": forged}).status_code == 401


def test_without_redis_reads_go_to_mongodb_and_changes_are_refused_unchanged(
    settings: Settings, app: Flask, client: FlaskClient, admin: dict[str, str], db: Database,
    new_client: Any,
) -> None:  # fmt: skip
    member = new_client()
    member.scope = f"team:{member.user}"
    _role(client, admin, member.scope, member.user, "writer")
    key = _create_key(app, "admin")
    away_app = create_app(dataclasses.replace(settings, redis_url=AWAY))
    away = away_app.test_client()
    member.http = away

    assert member.pull().status_code == 200  # membership read from MongoDB
    members = f"/v1/admin/scopes/{member.scope}/members"
    assert away.get(members, headers={"X-API-Key": key}).status_code == 200

    refused = away.delete(f"{members}/{member.user}", headers=admin)
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "cache_unavailable"
    assert refused.headers["Retry-After"] == "5"
    assert db[MEMBERS].find_one({"_id": member_id(member.scope, member.user)})["role"] == "writer"
    added = away.put(f"{members}/someone-else", json={"role": "reader"}, headers=admin)
    assert added.status_code == 503
    assert db[MEMBERS].find_one({"_id": member_id(member.scope, "someone-else")}) is None

    cli = away_app.test_cli_runner().invoke(args=["keys", "revoke", key.split("_")[1]])
    assert cli.exit_code != 0
    assert "not revoked" in cli.output
    assert db[API_KEYS].find_one({"_id": key.split("_")[1]})["revoked_at"] is None
