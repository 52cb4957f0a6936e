"""Rate limits per user, per API key and per IP, in Redis; and the security headers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis

from api import create_app
from config import Settings


@pytest.fixture
def tight(settings: Settings) -> Iterator[FlaskClient]:
    redis_url = settings.redis_url.rsplit("/", 1)[0] + "/13"
    Redis.from_url(redis_url).flushdb()
    tight_settings = dataclasses.replace(
        settings,
        redis_url=redis_url,
        rate_limit_user="3/minute",
        rate_limit_key="2/minute",
        rate_limit_anonymous="2/minute",
    )
    yield create_app(tight_settings).test_client()
    Redis.from_url(redis_url).flushdb()


def _pull(client: FlaskClient, headers: dict[str, str]) -> Any:
    return client.post(
        "/v1/sync/pull",
        json={"client_id": "limits-client", "scopes": {"user:limited": None}},
        headers=headers,
    )


def test_a_user_past_the_limit_gets_429_with_retry_after(
    tight: FlaskClient, make_token: Any
) -> None:
    limited = {"Authorization": f"Bearer {make_token('limited')}"}
    assert [_pull(tight, limited).status_code for _ in range(3)] == [200, 200, 200]
    refused = _pull(tight, limited)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.get_json()["error"]["code"] == "rate_limited"
    # Another user has a budget of their own.
    other = {"Authorization": f"Bearer {make_token('someone-else')}"}
    reply = tight.post(
        "/v1/sync/pull",
        json={"client_id": "other-client", "scopes": {"user:someone-else": None}},
        headers=other,
    )
    assert reply.status_code == 200


def test_unauthenticated_calls_are_limited_per_ip(tight: FlaskClient) -> None:
    codes = [tight.post("/v1/sync/pull", json={}).status_code for _ in range(3)]
    assert codes == [401, 401, 429]


def test_api_keys_are_limited_per_key(tight: FlaskClient, admin: dict[str, str]) -> None:
    codes = [
        tight.get("/v1/admin/scopes/team:1/members", headers=admin).status_code for _ in range(3)
    ]
    assert codes == [200, 200, 429]


def test_probes_are_not_limited(tight: FlaskClient) -> None:
    assert {tight.get("/healthz").status_code for _ in range(5)} == {200}


def test_security_headers(client: FlaskClient, make_token: Any) -> None:
    reply = client.post("/v1/sync/pull", json={})
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert reply.headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in reply.headers  # CORS is off by default


def test_behind_one_proxy_each_client_ip_has_its_own_budget_and_a_forged_hop_is_ignored(
    settings: Settings,
) -> None:
    """PROXY_HOPS=1 (nginx in front): the address is the last X-Forwarded-For entry, the one
    the proxy wrote; whatever a client put before it is not trusted."""
    redis_url = settings.redis_url.rsplit("/", 1)[0] + "/13"
    Redis.from_url(redis_url).flushdb()
    proxied = dataclasses.replace(
        settings, redis_url=redis_url, rate_limit_anonymous="2/minute", proxy_hops=1
    )
    client = create_app(proxied).test_client()

    def codes(forwarded_for: str) -> list[int]:
        return [
            client.post(
                "/v1/sync/pull", json={}, headers={"X-Forwarded-For": forwarded_for}
            ).status_code
            for _ in range(2)
        ]

    try:
        assert codes("203.0.113.1") == [401, 401]
        assert codes("203.0.113.2") == [401, 401]  # another phone: a budget of its own
        # The first phone again, pretending to be a third behind the proxy: still itself.
        assert codes("198.51.100.7, 203.0.113.1") == [429, 429]
    finally:
        Redis.from_url(redis_url).flushdb()
