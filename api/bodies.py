"""Request body rules applied before any view parses a body (SPEC G8).

Bodies of POST/PUT/PATCH under /v1, when there is one, must be JSON. `Content-Encoding: gzip`
is accepted and decompressed incrementally, stopping as soon as the output passes
MAX_BODY_BYTES, so a decompression bomb costs at most that much memory and is refused with 413.
"""

from __future__ import annotations

import zlib

from flask import Flask, current_app, request

from api.errors import APIError

_BODY_METHODS = ("POST", "PUT", "PATCH")
_CHUNK = 64 * 1024


def _gunzip_bounded(compressed: bytes, limit: int) -> bytes:
    too_large = APIError(413, "payload_too_large", f"decompressed body exceeds {limit} bytes")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    data = compressed
    try:
        while data:
            out += inflater.decompress(data, _CHUNK)
            if len(out) > limit:
                raise too_large
            data = inflater.unconsumed_tail
        out += inflater.flush()
    except zlib.error:
        raise APIError(400, "bad_request", "body is not valid gzip") from None
    if len(out) > limit:
        raise too_large
    if not inflater.eof:
        raise APIError(400, "bad_request", "gzip body is truncated")
    return bytes(out)


def _check_body() -> None:
    if request.routing_exception is not None:
        return  # 404/405 come first: there is no body to judge
    if request.method not in _BODY_METHODS or not request.path.startswith("/v1/"):
        return
    has_body = bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    if not has_body:
        return  # e.g. PUT /v1/devices/<id>/topics/<topic>; a missing required body is a 400
    if request.mimetype != "application/json":
        raise APIError(415, "unsupported_media_type", "request bodies must be application/json")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return
    if encoding != "gzip":
        raise APIError(
            415, "unsupported_media_type", f"Content-Encoding {encoding!r} is not supported"
        )
    limit = current_app.extensions["offgrid.settings"].max_body_bytes
    # get_data honours MAX_CONTENT_LENGTH for the compressed bytes; the cache then holds the
    # decompressed body that get_json() and the schemas read.
    request._cached_data = _gunzip_bounded(request.get_data(cache=False), limit)


def register_body_checks(app: Flask) -> None:
    app.before_request(_check_body)
