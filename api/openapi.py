"""What the OpenAPI document says about every operation beyond its schemas (SPEC §5): who may
call it, the errors any caller can meet, and its rate limit.

An apispec plugin adds these as each route is documented, from the route's place in the API
(sync and devices take a user's bearer token; push and admin an API key with a scope), so a
new endpoint is documented the same way without anyone remembering to.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec, BasePlugin

from config import Settings

BEARER = "bearerAuth"
API_KEY = "apiKeyAuth"
SECURITY_SCHEMES = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user's JWT (HS256 with JWT_SECRET, or RS256/ES256 from JWT_JWKS_URL); "
        "`sub` is the user.",
    },
    API_KEY: {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A server API key with the scope the operation names (`push:send` or "
        "`admin`); created with `flask --app api keys create`.",
    },
}
ERRORS = {
    "400": "Invalid request: the body or a parameter breaks the schema or a limit (G8)",
    "401": "Missing or invalid credentials",
    "403": "Authenticated, but not allowed: not a member of the scope, or the key lacks the scope",
    "404": "No such resource, or not yours",
    "409": "Conflicts with the resource's state",
    "410": "A checkpoint older than the tombstone horizon: resync from scratch",
    "413": "Body over MAX_BODY_BYTES (after gzip), too many mutations, or a value over 64 KiB",
    "415": "Body not application/json, or a Content-Encoding other than gzip",
    "429": "Rate limit reached; wait for Retry-After seconds",
    "503": "A service the request needs is down (the broker for pushes, Redis for membership"
    " changes); nothing was kept; retry after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}}


def _auth(path: str) -> str | None:
    if path.startswith(("/v1/sync", "/v1/devices")):
        return BEARER
    if path.startswith(("/v1/push", "/v1/admin")):
        return API_KEY
    return None


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    auth = _auth(path)
    if auth is None:
        return []
    statuses = ["400", "401", "403", "429"]
    if "{" in path:
        statuses.append("404")
    if "requestBody" in operation:
        statuses += ["413", "415"]
    if method == "post" and path in ("/v1/sync/push", "/v1/push"):
        statuses.append("503")
    if method in ("put", "delete") and path.startswith("/v1/admin/scopes/"):
        statuses.append("503")  # Redis could not be told of the change (sync.readcache)
    if path == "/v1/sync/pull":
        statuses.append("410")
    if method == "delete" and path.startswith("/v1/push/"):
        statuses.append("409")
    return statuses


class AuthErrorsLimitsPlugin(BasePlugin):
    def __init__(self, settings: Settings) -> None:
        self._limits = {
            BEARER: f"{settings.rate_limit_user} per user (RATE_LIMIT_USER)",
            API_KEY: f"{settings.rate_limit_key} per API key (RATE_LIMIT_KEY)",
        }
        self._anonymous = f"{settings.rate_limit_anonymous} per IP (RATE_LIMIT_ANONYMOUS)"

    def init_spec(self, spec: APISpec) -> None:
        for name, scheme in SECURITY_SCHEMES.items():
            spec.components.security_scheme(name, scheme)

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **_: Any
    ) -> None:
        if path is None or not operations:
            return
        auth = _auth(path)
        for method, operation in operations.items():
            if auth is None:
                operation["security"] = []
                continue
            operation["security"] = [{auth: []}]
            limit = f"{self._limits[auth]}; failed authentication counts {self._anonymous}"
            operation["x-rate-limit"] = limit
            operation["description"] = (
                operation.get("description", "").rstrip() + f"\n\nRate limit: {limit}."
            ).strip()
            responses = operation.setdefault("responses", {})
            for status in _statuses(path, method, operation):
                if status in responses:
                    continue
                response: dict[str, Any] = {
                    "description": ERRORS[status],
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                if status in ("429", "503"):
                    response["headers"] = RETRY_AFTER
                responses[status] = response
