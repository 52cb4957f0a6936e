"""Hostile requests: each gets a clear 4xx with the error body, never a crash or someone's data.

Completes the attacks already covered elsewhere (tokens, keys, limits, bodies; see
docs/security.md for the list). Several of these once answered 500 (values FerretDB's
PostgreSQL storage cannot hold: NUL characters, nested arrays, dotted field names; numbers
BSON cannot hold; JSON nested past the parser): api/bodies.py now refuses them with 400.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pymongo.database import Database
from redis import Redis

from api import create_app
from config import Settings
from push.devices import DEVICES
from sync.batches import BATCHES

DEVICE = "a" * 32


def _mutation(client_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": 1,
        "scope": "user:attacker",
        "collection": "notes",
        "key": "k",
        "op": "put",
        "value": {"v": 1},
        "hlc": f"{int(time.time() * 1000):013d}-0000-{client_id}",
        **fields,
    }


def _push_body(**fields: Any) -> str:
    client_id = f"attack-{uuid.uuid4().hex[:10]}"
    return json.dumps({"client_id": client_id, "mutations": [_mutation(client_id, **fields)]})


def _send_body(**fields: Any) -> str:
    body = {"audience": {"users": ["nobody-attacked"]}, "data": {"x": 1}, **fields}
    return json.dumps(body)


def _pull_body(extra: str) -> str:
    return '{"client_id": "attacker1", "scopes": {"user:attacker": null}' + extra + "}"


@dataclasses.dataclass(frozen=True)
class Hostile:
    method: str
    path: str
    body: str | None = None
    as_admin: bool = False  # X-API-Key of the admin instead of the attacker's bearer token
    expect: range = range(400, 500)


def _status(code: int) -> range:
    return range(code, code + 1)


HOSTILE = [
    # Path traversal: ids are opaque strings, never file paths.
    pytest.param(Hostile("GET", "/v1/sync/batches/..%2F..%2Fetc%2Fpasswd"), id="traversal-batch"),
    pytest.param(Hostile("GET", "/v1/sync/batches/../../etc/passwd"), id="traversal-raw"),
    pytest.param(Hostile("GET", "/v1/push/..%2Fadmin", as_admin=True), id="traversal-push"),
    pytest.param(Hostile("DELETE", "/v1/devices/..%2F..%2Fx"), id="traversal-device"),
    pytest.param(Hostile("GET", "/static/..%2Fconfig%2Fsettings.py"), id="traversal-static"),
    # Operator injection in path ids and query strings: compared as strings, so they match nothing.
    pytest.param(
        Hostile("GET", "/v1/sync/batches/" + quote('{"$gt":""}'), expect=_status(404)),
        id="operator-batch-id",
    ),
    pytest.param(
        Hostile("GET", "/v1/push/" + quote('{"$ne":null}'), as_admin=True, expect=_status(404)),
        id="operator-push-id",
    ),
    pytest.param(
        Hostile("DELETE", "/v1/devices/" + quote('{"$ne":null}'), expect=_status(404)),
        id="operator-device-id",
    ),
    pytest.param(
        Hostile("PUT", f"/v1/devices/{DEVICE}/topics/$where", expect=_status(400)),
        id="operator-topic",
    ),
    pytest.param(
        Hostile("GET", "/v1/sync/batches/x?_id[$ne]=1&user[$gt]=", expect=_status(404)),
        id="operator-query",
    ),
    # NUL bytes.
    pytest.param(Hostile("POST", "/v1/sync/push", _push_body(key="a\x00b")), id="nul-record-key"),
    pytest.param(Hostile("PUT", f"/v1/devices/{DEVICE}/topics/a%00b"), id="nul-topic"),
    pytest.param(
        Hostile("PUT", "/v1/admin/scopes/team:x/members/a%00b", '{"role": "reader"}', True),
        id="nul-member",
    ),
    pytest.param(
        Hostile("GET", "/v1/sync/batches/a%00b", expect=_status(404)),
        id="nul-batch-id",
    ),
    pytest.param(
        Hostile("GET", "/v1/push/a%00b", as_admin=True, expect=_status(404)),
        id="nul-push-id",
    ),
    pytest.param(
        Hostile("GET", "/v1/admin/scopes/team:a%00b/members", as_admin=True),
        id="nul-scope",
    ),
    pytest.param(
        Hostile(
            "POST",
            "/v1/sync/push",
            _push_body(value={"v": "a\x00b"}),
            expect=range(200, 500),
        ),
        id="nul-in-a-value",
    ),
    pytest.param(
        Hostile(
            "POST",
            "/v1/push",
            _send_body(notification={"title": "a\x00b", "body": "x"}),
            as_admin=True,
            expect=range(200, 500),
        ),
        id="nul-in-a-push-title",
    ),
    # Huge numbers.
    pytest.param(Hostile("POST", "/v1/sync/push", _push_body(id=2**70)), id="huge-mutation-id"),
    pytest.param(Hostile("POST", "/v1/sync/pull", _pull_body(', "limit": 1e999')), id="1e999"),
    pytest.param(Hostile("POST", "/v1/sync/pull", _pull_body(', "limit": NaN')), id="nan"),
    pytest.param(
        Hostile("POST", "/v1/sync/pull", _pull_body(', "limit": 1' + "0" * 5000)),
        id="5000-digit-integer",
    ),
    pytest.param(
        Hostile("POST", "/v1/sync/push", _push_body(value={"v": 2**64})),
        id="int-beyond-int64-in-a-value",
    ),
    pytest.param(
        Hostile(
            "POST",
            "/v1/sync/push",
            _push_body(value={"v": {"a.b": 1}}),
            expect=range(200, 500),
        ),
        id="inner-dot-in-a-field-name",
    ),
    pytest.param(
        Hostile("POST", "/v1/push", _send_body(data={"n": 2**64}), as_admin=True),
        id="int-beyond-int64-in-push-data",
    ),
    # Structures the storage cannot hold, and deep nesting before any schema runs.
    pytest.param(
        Hostile(
            "POST",
            "/v1/sync/push",
            _push_body(value={"v": [[1]]}),
            expect=range(200, 500),
        ),
        id="nested-arrays-in-a-value",
    ),
    pytest.param(
        Hostile("POST", "/v1/sync/push", _push_body(value={"v": "\ud800"})),
        id="lone-surrogate-in-a-value",
    ),
    pytest.param(
        Hostile("POST", "/v1/push", _send_body(audience={"users": ["\ud800"]}), True),
        id="lone-surrogate-in-a-push-audience",
    ),
    pytest.param(
        Hostile("POST", "/v1/sync/pull", "[" * 100_000 + "]" * 100_000),
        id="json-nested-100000-deep",
    ),
]


@pytest.fixture(scope="module")
def live_collections(app: Flask, settings: Settings) -> None:
    """A batch, a push and a member exist, as in any running deployment.

    FerretDB answers a lookup in a collection that does not exist yet without reaching its
    storage, which would hide the storage's own failures.
    """
    client = app.test_client()
    token = jwt.encode(
        {"sub": "attacker", "exp": int(time.time()) + 600}, settings.jwt_secret, algorithm="HS256"
    )
    admin = {"X-API-Key": settings.admin_api_key}
    pushed = client.post(
        "/v1/sync/push",
        data=_push_body(),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = client.post(
        "/v1/push",
        json={
            "audience": {"users": ["nobody-attacked"]},
            "data": {"x": 1},
            "options": {"send_at": later},
        },
        headers=admin,
    )
    member = client.put(
        "/v1/admin/scopes/team:attacked/members/bob", json={"role": "reader"}, headers=admin
    )
    assert (pushed.status_code, scheduled.status_code) == (202, 202)
    assert member.status_code in (200, 201)


@pytest.mark.usefixtures("live_collections")
@pytest.mark.parametrize("attack", HOSTILE)
def test_hostile_input_gets_a_4xx_with_the_error_body(
    attack: Hostile,
    client: FlaskClient,
    make_token: Any,
    admin: dict[str, str],
) -> None:
    headers = admin if attack.as_admin else {"Authorization": f"Bearer {make_token('attacker')}"}
    reply = client.open(
        attack.path,
        method=attack.method,
        data=attack.body,
        headers=headers,
        content_type="application/json" if attack.body is not None else None,
    )
    assert reply.status_code in attack.expect, reply.get_data(as_text=True)[:300]
    if reply.status_code >= 400:
        assert set(reply.get_json()["error"]) >= {"code", "message"}


def test_a_duplicated_json_key_is_read_once_the_same_way_by_every_check(
    client: FlaskClient, make_token: Any, db: Database
) -> None:
    # A parser differential would let the authorization check see one scope and the write
    # another; the last duplicate wins everywhere, so the scope checked is the scope written.
    raw = _push_body(scope="user:attacker")
    client_id = json.loads(raw)["client_id"]
    twice = '"scope": "user:attacker", "scope": "user:victim"'
    raw = raw.replace('"scope": "user:attacker"', twice)
    reply = client.post(
        "/v1/sync/push",
        data=raw,
        content_type="application/json",
        headers={"Authorization": f"Bearer {make_token('attacker')}"},
    )
    assert reply.status_code == 403
    assert "user:victim" in reply.get_json()["error"]["message"]
    assert db[BATCHES].count_documents({"client_id": client_id}) == 0


def test_a_device_cannot_be_registered_for_someone_else(
    client: FlaskClient, make_token: Any, db: Database
) -> None:
    token = uuid.uuid4().hex * 2
    reply = client.post(
        "/v1/devices",
        json={"platform": "ios", "token": token, "user": "victim"},
        headers={"Authorization": f"Bearer {make_token('attacker')}"},
    )
    assert reply.status_code == 400
    assert "user" in reply.get_json()["error"]["details"]
    assert db[DEVICES].count_documents({"token": token}) == 0


def test_an_operator_as_a_member_id_is_stored_as_a_plain_string(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    scope = f"team:inject-{uuid.uuid4().hex[:8]}"
    injected = '{"$gt":""}'
    assert (
        client.put(
            f"/v1/admin/scopes/{scope}/members/bob", json={"role": "reader"}, headers=admin
        ).status_code
        == 201
    )
    path = f"/v1/admin/scopes/{scope}/members/{quote(injected)}"
    assert client.put(path, json={"role": "writer"}, headers=admin).status_code == 201
    members = client.get(f"/v1/admin/scopes/{scope}/members", headers=admin).get_json()["members"]
    assert members == [{"user": "bob", "role": "reader"}, {"user": injected, "role": "writer"}]
    assert client.delete(path, headers=admin).status_code == 204
    members = client.get(f"/v1/admin/scopes/{scope}/members", headers=admin).get_json()["members"]
    assert members == [{"user": "bob", "role": "reader"}]  # bob was not matched by the operator


def test_an_unexpected_error_is_a_bare_500_without_details(
    client: FlaskClient, make_token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: Any, **__: Any) -> None:
        raise RuntimeError("mongodb://admin:hunter2@db.internal:27017 is on fire")

    monkeypatch.setattr("api.sync.batches.batch_status", explode)
    reply = client.get(
        "/v1/sync/batches/anything", headers={"Authorization": f"Bearer {make_token('a')}"}
    )
    assert reply.status_code == 500
    assert reply.get_json() == {"error": {"code": "internal", "message": "internal error"}}
    body = reply.get_data(as_text=True)
    assert "hunter2" not in body
    assert "Traceback" not in body


@pytest.mark.parametrize("given", ["a b", "x" * 129, "<script>", "a\tb"])
def test_a_malformed_request_id_is_replaced_not_echoed(client: FlaskClient, given: str) -> None:
    echoed = client.get("/healthz", headers={"X-Request-ID": given}).headers["X-Request-ID"]
    assert echoed != given
    assert len(echoed) == 32


@pytest.fixture
def tight(settings: Settings) -> Iterator[FlaskClient]:
    redis_url = settings.redis_url.rsplit("/", 1)[0] + "/12"
    Redis.from_url(redis_url).flushdb()
    limited = dataclasses.replace(
        settings, redis_url=redis_url, rate_limit_anonymous="2/minute", rate_limit_key="2/minute"
    )
    yield create_app(limited).test_client()
    Redis.from_url(redis_url).flushdb()


def test_rotating_invalid_bearer_tokens_stays_within_the_anonymous_limit(
    tight: FlaskClient,
) -> None:
    codes = [
        tight.get("/v1/sync/batches/x", headers={"Authorization": f"Bearer forged-{n}"}).status_code
        for n in range(4)
    ]
    assert codes == [401, 401, 429, 429]


def test_rotating_invalid_api_keys_does_not_escape_the_anonymous_limit(
    tight: FlaskClient,
) -> None:
    codes = [
        tight.get(
            "/v1/admin/scopes/team:1/members", headers={"X-API-Key": f"og_{n:012x}_{'A' * 43}"}
        ).status_code
        for n in range(4)
    ]
    assert codes[-1] == 429


def test_a_user_whose_sub_holds_a_pipe_can_pull_their_personal_scope(
    client: FlaskClient, settings: Settings
) -> None:
    sub = f"auth0|{uuid.uuid4().hex[:12]}"
    token = jwt.encode(
        {"sub": sub, "exp": int(time.time()) + 600}, settings.jwt_secret, algorithm="HS256"
    )
    reply = client.post(
        "/v1/sync/pull",
        json={"client_id": "pipe-user-1", "scopes": {f"user:{sub}": None}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 200, reply.get_data(as_text=True)
