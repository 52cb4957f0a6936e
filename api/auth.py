"""Who is calling: users by JWT bearer token (SPEC §5).

HS256 with `JWT_SECRET` for development; RS256/ES256 keys from `JWT_JWKS_URL`, with issuer and
audience checks, for production. The token's `sub` is the user.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

import jwt
from flask import g, request

from api.errors import APIError
from api.resources import resources
from config import Settings
from sync import membership

F = TypeVar("F", bound=Callable[..., Any])
LEEWAY_SECONDS = 30


class TokenVerifier:
    """Verifies bearer tokens against the configured key source."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # Keys are cached for 5 minutes; a token with an unknown `kid` (a rotation) refetches
        # the set, at most once per JWT_JWKS_COOLDOWN seconds, so random kids cannot turn
        # every request into a fetch.
        self._jwks = (
            jwt.PyJWKClient(
                settings.jwt_jwks_url,
                cache_keys=True,
                lifespan=300,
                timeout=5,
                cooldown_duration=float(settings.jwks_refetch_cooldown_seconds),
            )
            if settings.jwt_jwks_url
            else None
        )

    def user(self, token: str) -> str:
        options = {"require": ["sub", "exp"]}
        try:
            if self._jwks is not None:
                try:
                    key = self._jwks.get_signing_key_from_jwt(token).key
                except jwt.PyJWKClientConnectionError:
                    raise APIError(
                        503,
                        "unavailable",
                        "the identity provider's keys cannot be fetched",
                        headers={"Retry-After": "5"},
                    ) from None
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["RS256", "ES256"],
                    audience=self._settings.jwt_audience,
                    issuer=self._settings.jwt_issuer,
                    leeway=LEEWAY_SECONDS,
                    options={"require": ["sub", "exp", "iss", "aud"]},
                )
            else:
                claims = jwt.decode(
                    token,
                    self._settings.jwt_secret,
                    algorithms=["HS256"],
                    leeway=LEEWAY_SECONDS,
                    options=options,
                )
        except jwt.PyJWTError as exc:
            raise APIError(401, "unauthorized", f"invalid token: {exc}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not membership.is_user_id(sub):
            raise APIError(
                401, "unauthorized", "invalid token: `sub` must be 1-200 printable characters"
            )
        return sub


def token_expiry(token: str) -> float:
    """When an already verified token stops being accepted (its `exp` plus the leeway)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return float(claims["exp"]) + LEEWAY_SECONDS


def presented_bearer() -> str | None:
    """The request's bearer token, if it has one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def bearer_token() -> str:
    token = presented_bearer()
    if token is None:
        raise APIError(
            401,
            "unauthorized",
            "a bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


def user_of(token: str) -> str:
    """The subject of a verified token (APIError 401 otherwise), verified once per request:
    the rate limiter, which identifies the caller first, and the view share the answer."""
    if g.get("verified_token") != token:
        g.verified_user = resources().tokens.user(token)
        g.verified_token = token
    return str(g.verified_user)


def require_user(view: F) -> F:
    """Authenticate the bearer token and put its subject in `g.user`."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.user = user_of(bearer_token())
        return view(*args, **kwargs)

    return cast(F, wrapper)
