"""Every error body is built here: `{"error": {"code", "message", "details"?}}`."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from sync.readcache import CacheUnavailable

log = logging.getLogger(__name__)

# Codes for errors Werkzeug or flask-smorest raise before a view runs.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class APIError(Exception):
    """An error a view reports to the client, with its HTTP status and stable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _from_api_error(exc: APIError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _from_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    # flask-smorest/webargs put marshmallow's messages on `exc.data`.
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if messages is not None:
        # webargs nests messages under the location ("json", "query"); clients want the fields.
        details = messages.get("json", messages) if isinstance(messages, dict) else messages
        if isinstance(details, list):  # not a field map: the body is not a JSON document
            return error_response(400, "invalid_json", "request body is not valid JSON")
        return error_response(400, "validation_error", "request body is invalid", details)
    code = _HTTP_CODES.get(status, "error")
    message = exc.description if status < 500 else "internal error"
    # Keep the headers HTTP requires, such as `Allow` on 405.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_response(status, code, message or code.replace("_", " "), headers=headers)


def _from_cache_unavailable(exc: CacheUnavailable) -> Response:
    # A membership or key change Redis could not be told of was not made (sync.readcache).
    log.warning("change refused: the cache is unavailable", extra={"error": str(exc)})
    return error_response(
        503, "cache_unavailable", "Redis is unavailable; nothing was changed, retry later",
        headers={"Retry-After": "5"},
    )  # fmt: skip


def _from_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal", "internal error")


def register_errorhandlers(app: Flask) -> None:
    app.register_error_handler(APIError, _from_api_error)
    app.register_error_handler(HTTPException, _from_http_exception)
    app.register_error_handler(CacheUnavailable, _from_cache_unavailable)
    app.register_error_handler(Exception, _from_unexpected)
