"""JWT through a JWKS URL (RS256/ES256), with issuer/audience/expiry checks and key rotation,
against a local JWKS server and locally generated keys."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask.testing import FlaskClient

from api import create_app
from config import Settings

ISSUER, AUDIENCE = "https://id.offgrid.test/", "offgrid-api"


class JwksServer:
    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.fetches += 1
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, kid: str, key: Any, alg: str) -> None:
        algorithm = jwt.get_algorithm_by_name(alg)
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        self.keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.httpd.shutdown()


@pytest.fixture
def rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks_client(settings: Settings, jwks: JwksServer) -> FlaskClient:
    configured = dataclasses.replace(
        settings,
        jwt_secret=None,
        jwt_jwks_url=jwks.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwks_refetch_cooldown_seconds=1,
    )
    return create_app(configured).test_client()


def _token(key: Any, kid: str, alg: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "jwks-user", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, **claims}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def _pull(client: FlaskClient, token: str) -> Any:
    return client.post(
        "/v1/sync/pull",
        json={"client_id": "jwks-client", "scopes": {"user:jwks-user": None}},
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_tokens_signed_by_a_published_key_are_accepted(
    alg: str, jwks: JwksServer, jwks_client: FlaskClient, rsa_key: Any
) -> None:
    key = rsa_key if alg == "RS256" else ec.generate_private_key(ec.SECP256R1())
    jwks.add("k1", key, alg)
    assert _pull(jwks_client, _token(key, "k1", alg)).status_code == 200


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://evil.example/"},
        {"aud": "someone-else"},
        {"exp": int(time.time()) - 600},
        {"nbf": int(time.time()) + 600},
    ],
    ids=["issuer", "audience", "expired", "not-yet-valid"],
)
def test_wrong_claims_are_401(
    claims: dict[str, Any], jwks: JwksServer, jwks_client: FlaskClient, rsa_key: Any
) -> None:
    jwks.add("k1", rsa_key, "RS256")
    reply = _pull(jwks_client, _token(rsa_key, "k1", "RS256", **claims))
    assert reply.status_code == 401
    assert reply.get_json()["error"]["code"] == "unauthorized"


def test_algorithm_confusion_and_none_are_refused(
    jwks: JwksServer, jwks_client: FlaskClient, rsa_key: Any
) -> None:
    jwks.add("k1", rsa_key, "RS256")
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    # HS256 "signed" with the public key: a verifier that trusts the token's alg would accept it.
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(
        json.dumps(
            {"sub": "jwks-user", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}
        ).encode()
    )
    signature = b64(hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    forged = f"{header}.{body}.{signature}"
    assert _pull(jwks_client, forged).status_code == 401
    unsigned = f"{b64(json.dumps({'alg': 'none', 'kid': 'k1'}).encode())}.{body}."
    assert _pull(jwks_client, unsigned).status_code == 401


def test_a_rotated_key_is_fetched_but_unknown_kids_do_not_hammer_the_jwks(
    jwks: JwksServer, jwks_client: FlaskClient, rsa_key: Any
) -> None:
    jwks.add("old", rsa_key, "RS256")
    assert _pull(jwks_client, _token(rsa_key, "old", "RS256")).status_code == 200
    fetches = jwks.fetches
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.add("new", rotated, "RS256")
    time.sleep(1.1)  # the refetch cooldown since the last fetch has passed
    assert _pull(jwks_client, _token(rotated, "new", "RS256")).status_code == 200
    assert jwks.fetches == fetches + 1  # the new kid caused one refetch
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for kid in ("random-1", "random-2", "random-3"):
        assert _pull(jwks_client, _token(stranger, kid, "RS256")).status_code == 401
    assert jwks.fetches == fetches + 1  # within the cooldown: no further fetches


def test_an_unreachable_jwks_is_503_not_401(settings: Settings, rsa_key: Any) -> None:
    configured = dataclasses.replace(
        settings,
        jwt_secret=None,
        jwt_jwks_url="http://127.0.0.1:1/jwks.json",
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    reply = _pull(create_app(configured).test_client(), _token(rsa_key, "k1", "RS256"))
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "5"
