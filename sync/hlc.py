"""Hybrid logical clocks as clients send them: `<13-digit unix ms>-<4 hex counter>-<client_id>`.

The format is fixed width, so comparing two HLC strings compares their clocks; the client_id
suffix breaks ties between clients, which makes every HLC in the system distinct.
"""

from __future__ import annotations

import re

CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,128}$")  # an app install's id
HLC_PATTERN = re.compile(
    r"^(?P<ms>[0-9]{13})-(?P<counter>[0-9a-f]{4})-(?P<client>"
    + CLIENT_ID_PATTERN.pattern[1:-1]
    + r")$"
)


def physical_ms(hlc: str) -> int:
    """The wall-clock part of an HLC, in unix milliseconds."""
    return int(hlc[:13])


def belongs_to(hlc: str, client_id: str) -> bool:
    match = HLC_PATTERN.match(hlc)
    return match is not None and match.group("client") == client_id


def too_far_ahead(hlc: str, now_ms: int, max_skew_seconds: int) -> bool:
    """True when the client's clock runs more than the allowed skew ahead of the server."""
    return physical_ms(hlc) > now_ms + max_skew_seconds * 1000
