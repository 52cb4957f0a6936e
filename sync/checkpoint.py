"""Opaque pull checkpoints: a position in a scope's server order, when it was issued, and the
client's mutation id the chain has acknowledged so far.

Clients must treat them as opaque strings; the format is versioned so it can change. The issue
time lets the server refuse (410) a checkpoint older than the tombstone horizon: tombstones the
client would need may have been purged since. `acknowledged` is the `last_mutation_id` the
server reported on the page that issued it, so a chain of pulls never reports less (G4b);
v1 checkpoints, issued before it existed, read as 0.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_FORMAT = re.compile(
    r"^(?:v1:(?P<seq1>[0-9]{1,18}):(?P<issued1>[0-9]{13})"
    r"|v2:(?P<seq>[0-9]{1,18}):(?P<issued>[0-9]{13}):(?P<ack>[0-9]{1,18}))$"
)


class InvalidCheckpoint(ValueError):
    """The client sent a checkpoint this server did not issue."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    issued_ms: int
    acknowledged: int = 0

    def encode(self) -> str:
        raw = f"v2:{self.seq}:{self.issued_ms:013d}:{self.acknowledged}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Checkpoint:
        try:
            padded = token + "=" * (-len(token) % 4)
            raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        except (binascii.Error, UnicodeError, ValueError):
            raise InvalidCheckpoint("checkpoint is not one this server issued") from None
        match = _FORMAT.match(raw)
        if match is None:
            raise InvalidCheckpoint("checkpoint is not one this server issued")
        if match.group("seq1") is not None:
            return cls(int(match.group("seq1")), int(match.group("issued1")))
        return cls(int(match.group("seq")), int(match.group("issued")), int(match.group("ack")))
