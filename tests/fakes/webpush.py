"""A local Web Push service speaking the real protocol, for tests (never a patched function).

HTTPS with a throwaway CA; it checks the VAPID `Authorization` header (ES256 JWT signed by the
key in `k`, `aud` = this origin, unexpired, `sub` present), decrypts the `aes128gcm` body with
the subscription's private key (RFC 8291), and records what it received. A test can script a
subscription to answer 404/410/429/500 instead.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fakes.tls import server_certificate


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class WebPushFake:
    def __init__(self, directory: Path) -> None:
        self.ca_file, cert_file, key_file = server_certificate(directory)
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.errors: list[str] = []
        # Scripted answers: an int answers every request; a list is used up one per request.
        self.script: dict[str, int | list[int]] = {}
        self.retry_after = 30
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                status = fake.handle(
                    self.path,
                    {name.lower(): value for name, value in self.headers.items()},
                    self.rfile.read(int(self.headers.get("Content-Length", "0"))),
                )
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", str(fake.retry_after))
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.origin = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def subscribe(self) -> str:
        """A new browser subscription; returns the PushSubscription JSON a device registers."""
        sub_id = b64url(os.urandom(9))
        private = ec.generate_private_key(ec.SECP256R1())
        public = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        auth = os.urandom(16)
        self.subscriptions[sub_id] = {"private": private, "auth": auth}
        return json.dumps(
            {
                "endpoint": f"{self.origin}/push/{sub_id}",
                "keys": {"p256dh": b64url(public), "auth": b64url(auth)},
            }
        )

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        """Answer one push request; `headers` have lower-case names."""
        sub_id = path.rsplit("/", 1)[-1]
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            return 404
        scripted = self.script.get(sub_id)
        if isinstance(scripted, int):
            return scripted
        if scripted:
            return scripted.pop(0)
        try:
            self._check_vapid(headers.get("authorization", ""))
            if headers.get("content-encoding") != "aes128gcm" or "ttl" not in headers:
                raise ValueError("missing Content-Encoding aes128gcm or TTL")
            plain = http_ece.decrypt(
                body, private_key=sub["private"], auth_secret=sub["auth"], version="aes128gcm"
            )
        except Exception as exc:  # the fake reports, the test asserts on it
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return 400
        self.received.setdefault(sub_id, []).append(json.loads(plain))
        return 201

    def _check_vapid(self, authorization: str) -> None:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError(f"Authorization scheme {scheme!r} is not vapid")
        fields = dict(part.strip().split("=", 1) for part in params.split(","))
        point = unb64url(fields["k"])
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        claims = jwt.decode(fields["t"], key, algorithms=["ES256"], audience=self.origin)
        if claims["exp"] < time.time() or not str(claims.get("sub", "")).startswith(
            ("mailto:", "https://")
        ):
            raise ValueError("VAPID token expired or without sub")

    def sub_id(self, subscription_json: str) -> str:
        return json.loads(subscription_json)["endpoint"].rsplit("/", 1)[-1]

    def close(self) -> None:
        self.server.shutdown()
