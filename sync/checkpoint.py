"""Opaque pull checkpoints: a position in a scope's server order.

Clients must treat them as opaque strings; the format is versioned so it can change.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

_PREFIX = "v1:"


class InvalidCheckpoint(ValueError):
    """The client sent a checkpoint this server did not issue."""


@dataclass(frozen=True, order=True)
class Checkpoint:
    seq: int

    def encode(self) -> str:
        raw = f"{_PREFIX}{self.seq}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Checkpoint:
        try:
            padded = token + "=" * (-len(token) % 4)
            raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        except (binascii.Error, UnicodeError, ValueError):
            raise InvalidCheckpoint("checkpoint is not one this server issued") from None
        if not raw.startswith(_PREFIX) or not raw[len(_PREFIX) :].isdigit():
            raise InvalidCheckpoint("checkpoint is not one this server issued")
        return cls(int(raw[len(_PREFIX) :]))
