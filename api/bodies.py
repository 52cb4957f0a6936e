"""Request body rules applied before any view parses a body (SPEC G8).

Bodies of POST/PUT/PATCH under /v1, when there is one, must be JSON. `Content-Encoding: gzip`
is accepted and decompressed incrementally, stopping as soon as the output passes
MAX_BODY_BYTES, so a decompression bomb costs at most that much memory and is refused with 413.

The body is parsed here, once, and every value in it must be one the database can store, or
the request is refused with 400 before anything is read or written:
- JSON nested deeper than Python's parser goes, or numbers it refuses (over 4300 digits);
- integers outside signed 64 bits (BSON has no bigger integer);
- strings or field names that are not valid Unicode (a lone surrogate such as `\ud800`);
- NUL characters anywhere (MongoDB refuses them in field names; FerretDB's PostgreSQL storage
  in any string);
- an array directly inside an array, and field names containing `.` (FerretDB 1.24 stores
  neither; SPEC forbids only a leading `.`, so this is a documented narrowing). The scope
  names a pull lists are map keys that are never stored, and may hold `.`.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from flask import Flask, g, request
from flask_smorest import Blueprint as SmorestBlueprint
from webargs.core import missing
from webargs.flaskparser import FlaskParser

from api.errors import APIError
from api.resources import resources

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
    if "\x00" in request.path:  # no id holds NUL; FerretDB cannot even look one up
        raise APIError(404, "not_found", "no such resource")
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
    if encoding not in ("", "identity", "gzip"):
        raise APIError(
            415, "unsupported_media_type", f"Content-Encoding {encoding!r} is not supported"
        )
    if encoding == "gzip":
        limit = resources().settings.max_body_bytes
        # get_data honours MAX_CONTENT_LENGTH for the compressed bytes; the cache then holds
        # the decompressed body, which is parsed below.
        request._cached_data = _gunzip_bounded(request.get_data(cache=False), limit)
    _parse_storable(request.get_data(cache=True))


def _parse_storable(raw: bytes) -> None:
    """Parse the body once and check every value is storable; the views' schemas read this
    parse (`BodyParser`), not the bytes again."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise APIError(400, "too_deep", "the JSON body is nested too deeply") from None
    except ValueError as exc:  # also invalid UTF-8 and over-long numbers
        raise APIError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    problem = _unstorable(body)
    if problem:
        raise APIError(400, *problem)
    g.json_body = body


_INT64 = (-(2**63), 2**63 - 1)


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def _unstorable(value: Any, path: str = "body", in_array: bool = False) -> tuple[str, str] | None:
    """(error code, message) saying why `value` cannot be stored, or None. Recursion depth
    is bounded: json.loads could not have built anything deeper than it."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            return "validation_error", f"{path} is an integer outside 64 bits"
        return None
    if isinstance(value, str):
        bad = _bad_text(value)
        return ("validation_error", f"{path} {bad}") if bad else None
    if isinstance(value, list):
        if in_array:
            return "validation_error", f"{path} is an array inside an array: it cannot be stored"
        for index, item in enumerate(value):
            problem = _unstorable(item, f"{path}[{index}]", True)
            if problem:
                return problem
        return None
    for name, item in value.items():
        bad = _bad_text(name)
        if bad:
            return "invalid_field_name", f"a field name in {path} {bad}"
        if "." in name and path != "body.scopes":  # a pull's scope names are not stored
            return "invalid_field_name", f"field name {name!r} in {path} holds '.'"
        problem = _unstorable(item, f"{path}.{name}")
        if problem:
            return problem
    return None


class BodyParser(FlaskParser):
    """webargs, reading the body `_check_body` parsed and checked instead of parsing it again."""

    def _raw_load_json(self, req: Any) -> Any:
        return g.json_body if "json_body" in g else missing


class Blueprint(SmorestBlueprint):
    """flask-smorest's Blueprint whose arguments come from the one parse of the body."""

    ARGUMENTS_PARSER = BodyParser()


def register_body_checks(app: Flask) -> None:
    app.before_request(_check_body)
