"""API keys: created by the CLI and shown once, stored hashed, scoped, revocable."""

from __future__ import annotations

from typing import Any

from flask import Flask
from pymongo.database import Database

from api.keys import API_KEYS


def _create(app: Flask, *scopes: str) -> str:
    args = ["keys", "create", "test-key"] + [arg for s in scopes for arg in ("--scope", s)]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[0]


def _members(client: Any, key: str) -> Any:
    return client.get("/v1/admin/scopes/team:keys/members", headers={"X-API-Key": key})


def test_a_created_key_works_for_its_scope_only(app: Flask, client: Any) -> None:
    admin_key = _create(app, "admin")
    push_key = _create(app, "push:send")
    assert _members(client, admin_key).status_code == 200
    refused = _members(client, push_key)
    assert refused.status_code == 403
    assert "admin" in refused.get_json()["error"]["message"]


def test_keys_are_stored_hashed_and_listed_without_secrets(app: Flask, db: Database) -> None:
    key = _create(app, "admin")
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]
    stored = db[API_KEYS].find_one({"_id": key_id})
    assert secret not in str(stored)
    listing = app.test_cli_runner().invoke(args=["keys", "list"]).output
    assert key_id in listing
    assert secret not in listing


def test_revoked_keys_stop_working_at_once(app: Flask, client: Any) -> None:
    key = _create(app, "admin")
    assert _members(client, key).status_code == 200
    key_id = key.split("_")[1]
    result = app.test_cli_runner().invoke(args=["keys", "revoke", key_id])
    assert result.exit_code == 0
    assert _members(client, key).status_code == 401
    again = app.test_cli_runner().invoke(args=["keys", "revoke", key_id])
    assert again.exit_code != 0


def test_last_used_is_recorded(app: Flask, client: Any, db: Database) -> None:
    key = _create(app, "admin")
    assert db[API_KEYS].find_one({"_id": key.split("_")[1]})["last_used"] is None
    _members(client, key)
    assert db[API_KEYS].find_one({"_id": key.split("_")[1]})["last_used"] is not None


def test_forged_and_malformed_keys_are_401(app: Flask, client: Any) -> None:
    key = _create(app, "admin")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for presented in (forged, "og_000000000000_" + "x" * 43, '{"$gt": ""}', "x" * 5000):
        assert _members(client, presented).status_code == 401


def test_unknown_scope_is_refused_by_the_cli(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["keys", "create", "k", "--scope", "root"])
    assert result.exit_code != 0
