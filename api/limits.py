"""Rate limits (flask-limiter, counted in Redis so every web process shares them).

The caller is identified before the view runs: a valid bearer token counts against its user,
a valid `X-API-Key` against that key, anything else (no credentials, a bad token, an unknown
or revoked key) against the client IP. Each kind has
its own configurable limit. A breach is `429` with `Retry-After` and the usual error body.
Probes and the API description are not limited.

While Redis is unreachable the limits fail *soft*, neither open nor closed: each web process
counts the same limits in its own memory (flask-limiter's in-memory fallback) and goes back to
Redis when it answers again. So a Redis outage is never a `500`, and never an unlimited API.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, g, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from api.auth import presented_bearer, user_of
from api.errors import APIError, error_response
from api.keys import key_of
from api.resources import resources
from config import Settings


def caller_identity() -> str:
    """`user:<sub>`, `key:<hash>` or `ip:<address>`; also remembers a verified user in `g`."""
    if "rate_identity" not in g:
        g.rate_identity = _identify()
    return g.rate_identity


def _identify() -> str:
    token = presented_bearer()
    if token is not None:
        try:
            user = user_of(token)
        except APIError:
            pass  # the view answers 401; the attempt counts against the IP
        else:
            g.rate_kind = "user"
            return f"user:{user}"
    key = request.headers.get("X-API-Key")
    if key:
        found = key_of(key)
        if found is not None:
            g.rate_kind = "key"
            return f"key:{found[0]}"
        # An invalid key counts against the IP, like a bad token: rotating made-up keys
        # must not buy a fresh budget each time.
    g.rate_kind = "anonymous"
    return f"ip:{get_remote_address()}"


def _limit_for_caller() -> str:
    settings: Settings = resources().settings
    caller_identity()  # the limit depends on who calls; flask-limiter may ask this first
    return {
        "user": settings.rate_limit_user,
        "key": settings.rate_limit_key,
    }.get(g.get("rate_kind", "anonymous"), settings.rate_limit_anonymous)


def register_limits(app: Flask, settings: Settings) -> Limiter:
    limiter = Limiter(
        caller_identity,
        app=app,
        default_limits=[_limit_for_caller],
        default_limits_exempt_when=lambda: not request.path.startswith("/v1/"),
        storage_uri=settings.redis_url,
        storage_options={"socket_timeout": 2, "socket_connect_timeout": 2},
        # Our handler sets Retry-After on 429 only; flask-limiter's own header injection would
        # also rewrite the Retry-After of a 503.
        headers_enabled=False,
        strategy="moving-window",
        key_prefix="offgrid",
        in_memory_fallback_enabled=True,
    )

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded) -> Response:
        current = limiter.current_limit
        wait = math.ceil(current.reset_at - time.time()) if current is not None else 60
        return error_response(
            429,
            "rate_limited",
            f"rate limit exceeded ({exc.description}); retry later",
            headers={"Retry-After": str(max(1, wait))},
        )

    return limiter
