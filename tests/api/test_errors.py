"""Bad requests get a clear `{"error": {...}}` body with the fitting status, and change nothing."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import jwt
import pytest
from pymongo.database import Database

from sync.batches import BATCHES


def _push_body(client_id: str, **mutation: Any) -> dict[str, Any]:
    base = {
        "id": 1,
        "scope": "user:alice",
        "collection": "notes",
        "key": "k",
        "op": "put",
        "value": {"v": 1},
        "hlc": f"1764068000000-0000-{client_id}",
    }
    base.update(mutation)
    return {"client_id": client_id, "mutations": [base]}


@pytest.fixture
def alice(make_token: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token('alice')}"}


def _error(reply: Any, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.get_data(as_text=True)
    error = reply.get_json()["error"]
    assert error["message"]
    return error


def test_missing_token_is_401(client: Any) -> None:
    reply = client.post("/v1/sync/pull", json={"client_id": "abcdefgh", "scopes": {}})
    assert _error(reply, 401)["code"] == "unauthorized"
    assert reply.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(jwt.encode({"sub": "alice"}, "x" * 40, algorithm="HS256"), id="wrong-key"),
        pytest.param(
            jwt.encode({"sub": "alice"}, None, algorithm="none"),  # type: ignore[arg-type]
            id="alg-none",
        ),
        pytest.param("not-a-jwt", id="garbage"),
    ],
)
def test_bad_tokens_are_401(client: Any, token: str) -> None:
    reply = client.post(
        "/v1/sync/pull",
        json={"client_id": "abcdefgh", "scopes": {"user:alice": None}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert _error(reply, 401)["code"] == "unauthorized"


def test_expired_token_is_401(client: Any, make_token: Any) -> None:
    token = make_token("alice", exp=int(time.time()) - 3600)
    reply = client.post(
        "/v1/sync/pull",
        json={"client_id": "abcdefgh", "scopes": {"user:alice": None}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert "expired" in _error(reply, 401)["message"]


def test_non_json_body_is_415(client: Any, alice: dict[str, str]) -> None:
    reply = client.post("/v1/sync/push", data="client_id=x", headers=alice)
    assert _error(reply, 415)["code"] == "unsupported_media_type"


def test_malformed_json_is_400(client: Any, alice: dict[str, str]) -> None:
    reply = client.post(
        "/v1/sync/push", data="{not json", content_type="application/json", headers=alice
    )
    assert _error(reply, 400)["code"] == "invalid_json"


def test_body_over_the_limit_is_413_and_stores_nothing(
    client: Any, alice: dict[str, str], db: Database
) -> None:
    body = _push_body("bigbody01", value={"blob": "x" * (1024 * 1024)})
    reply = client.post("/v1/sync/push", json=body, headers=alice)
    assert _error(reply, 413)["code"] == "payload_too_large"
    assert db[BATCHES].count_documents({"client_id": "bigbody01"}) == 0


def test_value_over_64_kib_is_413(client: Any, alice: dict[str, str]) -> None:
    body = _push_body("bigvalue1", value={"blob": "x" * (65 * 1024)})
    reply = client.post("/v1/sync/push", json=body, headers=alice)
    assert _error(reply, 413)["code"] == "value_too_large"


@pytest.mark.parametrize(
    ("mutation", "field"),
    [
        ({"key": "has space"}, "key"),
        ({"key": "x" * 129}, "key"),
        ({"op": "upsert"}, "op"),
        ({"id": 0}, "id"),
        ({"id": "1"}, "id"),
        ({"hlc": "yesterday"}, "hlc"),
        ({"scope": "alice"}, "scope"),
        ({"value": None}, "value"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_invalid_mutations_are_400_with_the_field_named(
    client: Any, alice: dict[str, str], mutation: dict[str, Any], field: str
) -> None:
    reply = client.post("/v1/sync/push", json=_push_body("abcdefgh", **mutation), headers=alice)
    error = _error(reply, 400)
    assert error["code"] == "validation_error"
    assert field in json.dumps(error["details"])


def test_put_without_value_is_400(client: Any, alice: dict[str, str]) -> None:
    body = _push_body("abcdefgh")
    del body["mutations"][0]["value"]
    error = _error(client.post("/v1/sync/push", json=body, headers=alice), 400)
    assert "value" in error["details"]["mutations"]["0"]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ({"$where": "sleep(1000)"}, "invalid_field_name"),
        ({"a": {"$gt": ""}}, "invalid_field_name"),
        ({".hidden": 1}, "invalid_field_name"),
        ({"nul\x00": 1}, "invalid_field_name"),
        (json.loads("{" + '"a":{' * 16 + "}" * 16 + "}"), "too_deep"),
    ],
)
def test_dangerous_or_deep_values_are_refused(
    client: Any, alice: dict[str, str], value: dict[str, Any], code: str
) -> None:
    reply = client.post("/v1/sync/push", json=_push_body("abcdefgh", value=value), headers=alice)
    assert _error(reply, 400)["code"] == code


def test_client_id_shape_is_checked(client: Any, alice: dict[str, str]) -> None:
    reply = client.post("/v1/sync/push", json=_push_body("short"), headers=alice)
    assert "client_id" in _error(reply, 400)["details"]


def test_non_contiguous_ids_in_one_batch_are_400(client: Any, alice: dict[str, str]) -> None:
    body = _push_body("abcdefgh")
    second = dict(body["mutations"][0], id=3, key="k2")
    body["mutations"].append(second)
    assert _error(client.post("/v1/sync/push", json=body, headers=alice), 400)["code"] == (
        "ids_not_contiguous"
    )


def test_hlc_of_another_client_is_400(client: Any, alice: dict[str, str]) -> None:
    body = _push_body("abcdefgh", hlc="1764068000000-0000-someoneelse")
    assert _error(client.post("/v1/sync/push", json=body, headers=alice), 400)["code"] == (
        "invalid_hlc"
    )


def test_too_many_mutations_is_413(client: Any, alice: dict[str, str]) -> None:
    one = _push_body("abcdefgh")["mutations"][0]
    mutations = [dict(one, id=i, key=f"k{i}", value={}) for i in range(1, 1002)]
    reply = client.post(
        "/v1/sync/push", json={"client_id": "abcdefgh", "mutations": mutations}, headers=alice
    )
    assert _error(reply, 413)["code"] == "too_many_mutations"


def test_invalid_checkpoint_is_400(client: Any, alice: dict[str, str]) -> None:
    reply = client.post(
        "/v1/sync/pull",
        json={"client_id": "abcdefgh", "scopes": {"user:alice": "bm90LW91cnM"}},
        headers=alice,
    )
    assert _error(reply, 400)["code"] == "invalid_checkpoint"


def test_unknown_route_and_method_use_the_error_body(client: Any) -> None:
    assert _error(client.get("/v1/nothing-here"), 404)["code"] == "not_found"
    assert _error(client.get("/v1/sync/push"), 405)["code"] == "method_not_allowed"


def _gzip_post(client: Any, headers: dict[str, str], raw: bytes) -> Any:
    return client.post(
        "/v1/sync/push",
        data=raw,
        headers={**headers, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )


def test_gzip_bomb_is_413_and_stores_nothing(
    client: Any, alice: dict[str, str], db: Database
) -> None:
    # 64 MiB of spaces compress to ~64 KiB; the server must stop inflating at the 1 MiB limit.
    body = json.dumps(_push_body("gzipbomb1")).encode()
    bomb = gzip.compress(body[:-1] + b" " * (64 * 1024 * 1024) + body[-1:])
    assert len(bomb) < 1024 * 1024
    assert _error(_gzip_post(client, alice, bomb), 413)["code"] == "payload_too_large"
    assert db[BATCHES].count_documents({"client_id": "gzipbomb1"}) == 0


def test_corrupt_gzip_is_400(client: Any, alice: dict[str, str]) -> None:
    assert _error(_gzip_post(client, alice, b"\x1f\x8bnot really"), 400)["code"] == "bad_request"


def test_unsupported_content_encoding_is_415(client: Any, alice: dict[str, str]) -> None:
    reply = client.post(
        "/v1/sync/push", json=_push_body("abcdefgh"), headers={**alice, "Content-Encoding": "br"}
    )
    assert _error(reply, 415)["code"] == "unsupported_media_type"


def test_undeclared_method_is_405_with_allow_even_without_a_json_body(client: Any) -> None:
    reply = client.put("/v1/sync/batches/abc")
    assert _error(reply, 405)["code"] == "method_not_allowed"
    assert "GET" in reply.headers["Allow"]


def test_openapi_documents_the_error_body(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert "/v1/admin/scopes/{scope}/members/{user}" in spec["paths"]


def test_push_without_a_body_is_400(client: Any, alice: dict[str, str]) -> None:
    reply = client.post("/v1/sync/push", headers=alice)
    assert _error(reply, 400)["code"] == "validation_error"
