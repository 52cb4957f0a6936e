"""Bounds on what a client may send (SPEC G8): value size, nesting depth, field names."""

from __future__ import annotations

import json
from typing import Any

MAX_VALUE_BYTES = 64 * 1024
MAX_DEPTH = 16


class LimitExceeded(ValueError):
    """A value breaks one of the limits; `code` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _check_names_and_depth(value: Any, depth: int, max_depth: int, path: str) -> None:
    if depth > max_depth:
        raise LimitExceeded("too_deep", f"{path or 'value'} nests deeper than {max_depth} levels")
    if isinstance(value, dict):
        for name, item in value.items():
            # SPEC forbids a leading `$` or `.` and NUL; FerretDB 1.24 stores no `.` at all.
            if name.startswith("$") or "." in name or "\x00" in name:
                raise LimitExceeded(
                    "invalid_field_name",
                    f"field name {name!r} at {path or 'value'} starts with $, holds . or NUL",
                )
            _check_names_and_depth(item, depth + 1, max_depth, f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_names_and_depth(item, depth + 1, max_depth, f"{path}[{index}]")


def check_value(
    value: dict[str, Any], max_bytes: int = MAX_VALUE_BYTES, max_depth: int = MAX_DEPTH
) -> None:
    """Raise `LimitExceeded` when a record value is too large, too deep or badly named."""
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        raise LimitExceeded("value_too_large", f"value is {size} bytes; the limit is {max_bytes}")
    _check_names_and_depth(value, 1, max_depth, "")
