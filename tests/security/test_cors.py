"""CORS: off unless CORS_ORIGINS names origins; then only those exact origins may call /v1."""

from __future__ import annotations

import dataclasses

import pytest
from flask.testing import FlaskClient

from api import create_app
from api.cors import MAX_AGE_SECONDS
from config import Settings

APP = "https://app.example.com"
LOCAL_V6 = "http://[::1]:8080"
NEEDED_HEADERS = ["Authorization", "Content-Type", "Content-Encoding", "X-API-Key", "Prefer"]
PULL = {"client_id": "cors-client", "scopes": {"user:cors": None}}


@pytest.fixture(scope="module")
def cors_client(settings: Settings) -> FlaskClient:
    configured = dataclasses.replace(settings, cors_origins=(APP, LOCAL_V6))
    return create_app(configured).test_client()


def _preflight(
    client: FlaskClient, origin: str, path: str = "/v1/sync/push", method: str = "POST"
) -> dict[str, str]:
    reply = client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ", ".join([*NEEDED_HEADERS, "X-Evil"]),
        },
    )
    assert reply.status_code == 200
    return dict(reply.headers)


def _cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower().startswith("access-control-")}


def test_cors_is_off_by_default(client: FlaskClient) -> None:
    reply = client.post("/v1/sync/pull", json=PULL, headers={"Origin": APP})
    assert _cors_headers(dict(reply.headers)) == {}
    assert _cors_headers(_preflight(client, APP)) == {}


def test_an_allowed_origin_is_reflected_on_answers_and_errors(cors_client: FlaskClient) -> None:
    refused = cors_client.post("/v1/sync/pull", json=PULL, headers={"Origin": APP})
    assert refused.status_code == 401  # the web app can read why: no token
    assert refused.headers["Access-Control-Allow-Origin"] == APP
    assert "Origin" in refused.headers["Vary"]
    exposed = refused.headers["Access-Control-Expose-Headers"]
    assert "Retry-After" in exposed
    assert "Access-Control-Allow-Credentials" not in refused.headers  # no cookies involved


def test_a_preflight_from_an_allowed_origin_is_answered(cors_client: FlaskClient) -> None:
    headers = _preflight(cors_client, APP)
    assert headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {h.lower() for h in NEEDED_HEADERS}  # not X-Evil
    assert headers["Access-Control-Max-Age"] == str(MAX_AGE_SECONDS)
    # Paths with ids need no credentials for their preflight either.
    by_id = _preflight(cors_client, APP, "/v1/devices/abc/topics/news", "PUT")
    assert by_id["Access-Control-Allow-Origin"] == APP
    assert "PUT" in by_id["Access-Control-Allow-Methods"]


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "https://evilapp.example.com",
        "http://app.example.com",  # another scheme is another origin
        "https://app.example.com:8443",
        "null",
        "http://[::1]:8081",
        "http://[::1]:8080.evil.example",
    ],
)
def test_any_other_origin_gets_no_cors_headers(cors_client: FlaskClient, origin: str) -> None:
    reply = cors_client.post("/v1/sync/pull", json=PULL, headers={"Origin": origin})
    assert _cors_headers(dict(reply.headers)) == {}
    assert _cors_headers(_preflight(cors_client, origin)) == {}


def test_an_ipv6_origin_is_matched_exactly(cors_client: FlaskClient) -> None:
    assert _preflight(cors_client, LOCAL_V6)["Access-Control-Allow-Origin"] == LOCAL_V6


def test_only_the_api_under_v1_is_shared(cors_client: FlaskClient) -> None:
    for path in ("/healthz", "/metrics", "/openapi.json"):
        reply = cors_client.get(path, headers={"Origin": APP})
        assert "Access-Control-Allow-Origin" not in reply.headers, path
