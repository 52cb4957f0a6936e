"""Every cell of the authorization matrix (tests/security/matrix.py), against the real app.

Each row's request is made by every kind of caller; each caller gets fresh resources (a new
client id, device, push or member), so the cells do not depend on one another. A refused
request that would change something is checked to have changed nothing.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pymongo.database import Database

from api.keys import create_key
from config import Settings
from push.devices import DEVICES
from push.pushes import PUSHES
from sync import membership
from sync.batches import BATCHES
from tests.security.matrix import CALLERS, MATRIX, Row, render

ROOT = Path(__file__).resolve().parents[2]
Headers = dict[str, str]


@dataclass(frozen=True)
class World:
    db: Database
    scope: str  # the shared scope: `reader` reads it, `writer` writes it
    users: dict[str, str]  # stranger, reader, writer -> their user ids
    headers: dict[str, Headers]  # every caller -> the credentials it presents

    @property
    def writer(self) -> str:
        return self.users["writer"]


@pytest.fixture(scope="module")
def world(settings: Settings, db: Database) -> World:
    tag = uuid.uuid4().hex[:10]
    users = {kind: f"{kind}-{tag}" for kind in ("stranger", "reader", "writer")}
    scope = f"team:matrix-{tag}"
    membership.set_member(db, scope, users["reader"], "reader")
    membership.set_member(db, scope, users["writer"], "writer")
    expires = int(time.time()) + 3600
    headers: dict[str, Headers] = {"anonymous": {}}
    for kind, user in users.items():
        token = jwt.encode({"sub": user, "exp": expires}, settings.jwt_secret, algorithm="HS256")
        headers[kind] = {"Authorization": f"Bearer {token}"}
    headers["push_key"] = {"X-API-Key": create_key(db, f"matrix-push-{tag}", ["push:send"])[0]}
    headers["admin_key"] = {"X-API-Key": create_key(db, f"matrix-admin-{tag}", ["admin"])[0]}
    headers["bootstrap"] = {"X-API-Key": settings.admin_api_key}
    assert list(headers) == list(CALLERS)
    return World(db, scope, users, headers)


Call = Callable[[FlaskClient, World, Headers], Any]
CALLS: dict[str, Call] = {}


def call(row_id: str) -> Callable[[Call], Call]:
    def register(fn: Call) -> Call:
        CALLS[row_id] = fn
        return fn

    return register


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _get(path: str) -> Call:
    return lambda client, _world, headers: client.get(path, headers=headers)


for _row_id, _path in [
    ("healthz", "/healthz"),
    ("readyz", "/readyz"),
    ("metrics", "/metrics"),
    ("openapi", "/openapi.json"),
    ("docs", "/docs"),
    ("static", "/static/../config/settings.py"),
]:
    call(_row_id)(_get(_path))


def _push(client: FlaskClient, world: World, headers: Headers, scope: str) -> Any:
    client_id = _fresh("matrix")
    mutation = {
        "id": 1,
        "scope": scope,
        "collection": "notes",
        "key": "k",
        "op": "put",
        "value": {"v": 1},
        "hlc": f"{int(time.time() * 1000):013d}-0000-{client_id}",
    }
    reply = client.post(
        "/v1/sync/push", json={"client_id": client_id, "mutations": [mutation]}, headers=headers
    )
    if reply.status_code != 202:
        assert world.db[BATCHES].count_documents({"client_id": client_id}) == 0
    return reply


@call("sync-push-shared")
def _push_shared(client: FlaskClient, world: World, headers: Headers) -> Any:
    return _push(client, world, headers, world.scope)


@call("sync-push-personal")
def _push_personal(client: FlaskClient, world: World, headers: Headers) -> Any:
    return _push(client, world, headers, f"user:{world.writer}")


@call("batch-status")
def _batch_status(client: FlaskClient, world: World, headers: Headers) -> Any:
    submitted = _push(client, world, world.headers["writer"], f"user:{world.writer}")
    assert submitted.status_code == 202
    return client.get(f"/v1/sync/batches/{submitted.get_json()['batch_id']}", headers=headers)


def _pull(client: FlaskClient, headers: Headers, scope: str) -> Any:
    body = {"client_id": _fresh("matrix"), "scopes": {scope: None}}
    return client.post("/v1/sync/pull", json=body, headers=headers)


@call("sync-pull-shared")
def _pull_shared(client: FlaskClient, world: World, headers: Headers) -> Any:
    return _pull(client, headers, world.scope)


@call("sync-pull-personal")
def _pull_personal(client: FlaskClient, world: World, headers: Headers) -> Any:
    return _pull(client, headers, f"user:{world.writer}")


def _roles(world: World) -> dict[str, str]:
    return {m["user"]: m["role"] for m in membership.list_members(world.db, world.scope)}


@call("member-put")
def _member_put(client: FlaskClient, world: World, headers: Headers) -> Any:
    user = _fresh("member")
    reply = client.put(
        f"/v1/admin/scopes/{world.scope}/members/{user}", json={"role": "writer"}, headers=headers
    )
    assert (user in _roles(world)) == (reply.status_code == 201)
    return reply


@call("member-delete")
def _member_delete(client: FlaskClient, world: World, headers: Headers) -> Any:
    user = _fresh("member")
    membership.set_member(world.db, world.scope, user, "reader")
    reply = client.delete(f"/v1/admin/scopes/{world.scope}/members/{user}", headers=headers)
    assert (user in _roles(world)) == (reply.status_code != 204)
    return reply


@call("members-get")
def _members_get(client: FlaskClient, world: World, headers: Headers) -> Any:
    reply = client.get(f"/v1/admin/scopes/{world.scope}/members", headers=headers)
    if reply.status_code == 200:
        assert _roles(world)[world.writer] == "writer"
    return reply


@call("device-register")
def _device_register(client: FlaskClient, world: World, headers: Headers) -> Any:
    token = uuid.uuid4().hex * 2
    reply = client.post("/v1/devices", json={"platform": "ios", "token": token}, headers=headers)
    assert world.db[DEVICES].count_documents({"token": token}) == (reply.status_code == 201)
    return reply


def _writers_device(client: FlaskClient, world: World) -> str:
    body = {"platform": "ios", "token": uuid.uuid4().hex * 2, "topics": ["news"]}
    reply = client.post("/v1/devices", json=body, headers=world.headers["writer"])
    assert reply.status_code == 201
    return str(reply.get_json()["device_id"])


def _device(world: World, device_id: str) -> dict[str, Any] | None:
    return world.db[DEVICES].find_one({"_id": device_id})


@call("device-delete")
def _device_delete(client: FlaskClient, world: World, headers: Headers) -> Any:
    device_id = _writers_device(client, world)
    reply = client.delete(f"/v1/devices/{device_id}", headers=headers)
    assert (_device(world, device_id) is None) == (reply.status_code == 204)
    return reply


def _topic(method: str, topics_after: list[str]) -> Call:
    def request(client: FlaskClient, world: World, headers: Headers) -> Any:
        device_id = _writers_device(client, world)
        path = f"/v1/devices/{device_id}/topics/{'news' if method == 'DELETE' else 'sport'}"
        reply = client.open(path, method=method, headers=headers)
        stored = _device(world, device_id)
        assert stored is not None
        assert stored["topics"] == (topics_after if reply.status_code == 200 else ["news"])
        return reply

    return request


call("topic-put")(_topic("PUT", ["news", "sport"]))
call("topic-delete")(_topic("DELETE", []))


def _notification(**options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "audience": {"users": [_fresh("nobody")]},
        "notification": {"title": "matrix", "body": "hello"},
    }
    if options:
        body["options"] = options
    return body


@call("push-send")
def _push_send(client: FlaskClient, world: World, headers: Headers) -> Any:
    body = _notification()
    reply = client.post("/v1/push", json=body, headers=headers)
    stored = world.db[PUSHES].count_documents({"audience": body["audience"]})
    assert stored == (reply.status_code == 202)
    return reply


def _scheduled_push(client: FlaskClient, world: World, sender: str) -> str:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    reply = client.post(
        "/v1/push", json=_notification(send_at=later), headers=world.headers[sender]
    )
    assert reply.status_code == 202
    return str(reply.get_json()["push_id"])


def _status(sender: str) -> Call:
    def request(client: FlaskClient, world: World, headers: Headers) -> Any:
        return client.get(f"/v1/push/{_scheduled_push(client, world, sender)}", headers=headers)

    return request


def _cancel(sender: str) -> Call:
    def request(client: FlaskClient, world: World, headers: Headers) -> Any:
        push_id = _scheduled_push(client, world, sender)
        reply = client.delete(f"/v1/push/{push_id}", headers=headers)
        status = world.db[PUSHES].find_one({"_id": push_id})["status"]
        assert status == ("cancelled" if reply.status_code == 200 else "scheduled")
        return reply

    return request


call("push-status")(_status("push_key"))
call("push-status-other")(_status("bootstrap"))
call("push-cancel")(_cancel("push_key"))
call("push-cancel-other")(_cancel("bootstrap"))


@pytest.mark.parametrize("row", MATRIX, ids=lambda row: row.id)
def test_every_caller_gets_the_status_in_the_matrix(
    row: Row, client: FlaskClient, world: World
) -> None:
    replies = {caller: CALLS[row.id](client, world, world.headers[caller]) for caller in CALLERS}
    got = tuple(reply.status_code for reply in replies.values())
    wrong = {c: (e, g) for c, e, g in zip(CALLERS, row.expect, got, strict=True) if e != g}
    assert not wrong, f"{row.method} {row.path}: caller: (expected, got) {wrong}"
    for reply in replies.values():
        if reply.status_code >= 400:  # every refusal carries the one error body
            error = reply.get_json()["error"]
            assert error["code"]
            assert error["message"]


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^:<>]+)>", r"{\1}", rule)


def test_every_route_of_the_app_has_a_row_and_every_row_a_route(app: Flask) -> None:
    routes = {
        (method, _openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    rows = {(row.method, row.path) for row in MATRIX}
    assert sorted(routes - rows) == [], "routes without a row in tests/security/matrix.py"
    assert sorted(rows - routes) == [], "rows in tests/security/matrix.py for no route"


def test_every_row_has_a_request_and_a_status_per_caller() -> None:
    assert len({row.id for row in MATRIX}) == len(MATRIX)
    assert set(CALLS) == {row.id for row in MATRIX}
    assert all(len(row.expect) == len(CALLERS) for row in MATRIX)


def test_the_documented_matrix_is_the_tested_one() -> None:
    docs = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert render() in docs, "regenerate with: .venv/bin/python -m tests.security.matrix"
