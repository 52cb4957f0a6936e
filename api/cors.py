"""CORS for web apps, off by default: only the exact origins in `CORS_ORIGINS` may call /v1.

Origins are handed to flask-cors as escaped, anchored patterns, so each is matched exactly (a
bare string holding `[`, as an IPv6 origin does, would otherwise be read as a regular
expression). Browsers send the bearer token or API key as an ordinary header, not a cookie, so
no `Access-Control-Allow-Credentials` is sent. `Retry-After` is exposed so that a web client can
honour 429 and 503.
"""

from __future__ import annotations

import re

from flask import Flask
from flask_cors import CORS

from config import Settings

ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE")
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Content-Encoding",
    "X-API-Key",
    "Prefer",
    "X-Request-ID",
)
EXPOSED_HEADERS = ("Retry-After", "X-Request-ID", "WWW-Authenticate")
MAX_AGE_SECONDS = 600


def register_cors(app: Flask, settings: Settings) -> None:
    if not settings.cors_origins:
        return
    CORS(
        app,
        resources=r"/v1/.*",
        origins=[re.compile(re.escape(o) + r"\Z", re.IGNORECASE) for o in settings.cors_origins],
        methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        max_age=MAX_AGE_SECONDS,
        supports_credentials=False,
    )
