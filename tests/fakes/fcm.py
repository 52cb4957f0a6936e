"""A local FCM HTTP v1 and its OAuth2 token endpoint, speaking the real protocols, for tests.

- Token endpoint (HTTPS, HTTP/1.1, like Google's): takes the service account's signed JWT
  assertion (RS256, `iss` = client email, `aud` = Google's token endpoint, the FCM scope),
  checks it with the account's public key, and issues an access token.
- `POST /v1/projects/<project>/messages:send` (HTTP/2 over TLS): checks the bearer is an
  issued, unexpired, unrevoked token, the project, and the payload rules (exactly one target,
  every data value a string, `android.priority` and `android.ttl` formats), and answers with
  FCM's real success and error bodies.

Scripts: `script[token]` is a list of `(errorCode, retry_after or None)` answers used one per
request; tokens in `unregistered` answer `UNREGISTERED`; `revoke_all()` makes every issued
access token answer 401 `UNAUTHENTICATED`.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.h2server import H2Server, Reply, Request
from tests.fakes.tls import server_certificate

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# Google's token endpoint is the assertion's audience even when the account names another URI.
TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_:\-]{20,}$")
ERRORS = {  # errorCode -> (HTTP status, google.rpc status, message), as FCM sends them
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "QUOTA_EXCEEDED": (
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests' of service 'fcm.googleapis.com'.",
    ),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push."),
}
INVALID_TOKEN = "The registration token is not a valid FCM registration token"


class FCMFake:
    PROJECT = "offgrid-test"

    def __init__(self, directory: Path) -> None:
        self.ca_file, cert_file, key_file = server_certificate(directory)
        self._account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.rejected: list[tuple[str, str]] = []
        self.script: dict[str, list[tuple[str, int | None]]] = {}
        self.unregistered: set[str] = set()
        self.access_tokens: dict[str, float] = {}  # token -> expiry
        self.token_requests = 0
        self.assertion_errors: list[str] = []
        self._lock = threading.Lock()
        self.server = H2Server(cert_file, key_file, self.handle)
        self.origin = self.server.origin
        self._oauth = self._oauth_server(cert_file, key_file)
        self.token_uri = f"https://127.0.0.1:{self._oauth.server_address[1]}/token"
        self.service_account_file = directory / "service-account.json"
        self.service_account_file.write_text(json.dumps(self.service_account()))

    def service_account(self) -> dict[str, str]:
        pem = self._account_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.PROJECT,
            "private_key_id": "test-key-1",
            "private_key": pem,
            "client_email": f"offgrid@{self.PROJECT}.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": self.token_uri,
        }

    def env(self) -> dict[str, str]:
        return {
            "FCM_SERVICE_ACCOUNT_FILE": str(self.service_account_file),
            "FCM_BASE_URL": self.origin,
            "FCM_CA_FILE": str(self.ca_file),
        }

    def revoke_all(self) -> None:
        with self._lock:
            self.access_tokens.clear()

    # -- OAuth2 token endpoint (RFC 7523 JWT bearer grant) --

    def _oauth_server(self, cert_file: Path, key_file: Path) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                status, body = fake.grant(form)
                encoded = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        self.token_requests += 1
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(
                form["assertion"][0],
                self._account_key.public_key(),
                algorithms=["RS256"],
                audience=TOKEN_AUDIENCE,
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
            if claims["iss"] != self.service_account()["client_email"]:
                raise ValueError("iss is not the service account")
            if SCOPE not in str(claims.get("scope", "")).split():
                raise ValueError("the firebase.messaging scope is missing")
        except (KeyError, ValueError, jwt.PyJWTError) as exc:
            self.assertion_errors.append(str(exc))
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        token = "ya29." + secrets.token_urlsafe(24)
        with self._lock:
            self.access_tokens[token] = time.time() + 3600
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    # -- messages:send --

    def handle(self, request: Request) -> Reply:
        with self._lock:
            return self._judge(request)

    def _judge(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != (
            f"/v1/projects/{self.PROJECT}/messages:send"
        ):
            return _status(404, "NOT_FOUND", "Requested entity was not found.")
        bearer = request.headers.get("authorization", "")
        scheme, _, token = bearer.partition(" ")
        if scheme != "Bearer" or self.access_tokens.get(token, 0) < time.time():
            return _status(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        try:
            message = json.loads(request.body)["message"]
        except (ValueError, KeyError, TypeError):
            return _fcm_error("INVALID_ARGUMENT")
        problem = _payload_problem(message)
        if problem:
            return _fcm_error("INVALID_ARGUMENT", problem)
        device = message["token"]
        if not TOKEN_PATTERN.match(device):
            self.rejected.append((device, "INVALID_ARGUMENT"))
            return _fcm_error("INVALID_ARGUMENT", INVALID_TOKEN)
        scripted = self.script.get(device)
        if scripted:
            code, retry_after = scripted.pop(0)
            self.rejected.append((device, code))
            return _fcm_error(code, retry_after=retry_after)
        if device in self.unregistered:
            self.rejected.append((device, "UNREGISTERED"))
            return _fcm_error("UNREGISTERED")
        self.received.setdefault(device, []).append(message)
        body = {"name": f"projects/{self.PROJECT}/messages/0:{secrets.token_hex(8)}"}
        return Reply(200, json.dumps(body).encode(), {"content-type": "application/json"})

    def close(self) -> None:
        self.server.close()
        self._oauth.shutdown()


def _payload_problem(message: Any) -> str | None:
    if not isinstance(message, dict):
        return "Invalid JSON payload received. 'message' is not an object."
    targets = [key for key in ("token", "topic", "condition") if key in message]
    if len(targets) != 1:
        return "Exactly one of token, topic or condition must be specified."
    for key, value in (message.get("data") or {}).items():
        if not isinstance(value, str):
            return f"Invalid value at 'message.data[{key}].value' (TYPE_STRING)"
    android = message.get("android") or {}
    if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
        return "Invalid value at 'message.android.priority'"
    if "ttl" in android and not re.fullmatch(r"\d+(\.\d{1,9})?s", str(android["ttl"])):
        return (
            "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)"
        )
    return None


def _status(code: int, status: str, message: str, details: list[Any] | None = None) -> Reply:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return Reply(code, json.dumps({"error": error}).encode(), {"content-type": "application/json"})


def _fcm_error(code: str, message: str | None = None, retry_after: int | None = None) -> Reply:
    status, rpc_status, default = ERRORS[code]
    reply = _status(
        status, rpc_status, message or default, [{"@type": FCM_ERROR, "errorCode": code}]
    )
    if retry_after is not None:
        reply.headers["retry-after"] = str(retry_after)
    return reply
