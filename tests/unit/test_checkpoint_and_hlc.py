"""Pull checkpoints and client HLCs: pure functions, no services."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.checkpoint import Checkpoint, InvalidCheckpoint
from sync.hlc import belongs_to, physical_ms, too_far_ahead

SEQS = st.integers(min_value=0, max_value=10**18 - 1)
MS = st.integers(min_value=10**12, max_value=10**13 - 1)


@given(seq=SEQS, issued=MS, acknowledged=SEQS)
def test_a_checkpoint_reads_back_as_issued(seq: int, issued: int, acknowledged: int) -> None:
    token = Checkpoint(seq, issued, acknowledged).encode()
    assert Checkpoint.decode(token) == Checkpoint(seq, issued, acknowledged)
    assert "=" not in token  # opaque and URL-safe: no padding to escape


def test_a_v1_checkpoint_issued_before_acknowledgements_reads_as_acknowledging_nothing() -> None:
    token = base64.urlsafe_b64encode(b"v1:42:1764068000000").decode().rstrip("=")
    assert Checkpoint.decode(token) == Checkpoint(42, 1764068000000, 0)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not base64 at all!",
        base64.urlsafe_b64encode(b"v9:1:1764068000000:0").decode(),
        base64.urlsafe_b64encode(b"v2:-1:1764068000000:0").decode(),
        base64.urlsafe_b64encode(b"v2:1:176406800000:0").decode(),  # 12-digit time
        base64.urlsafe_b64encode("v2:1:1764068000000:é".encode()).decode(),
    ],
)
def test_a_checkpoint_this_server_did_not_issue_is_refused(token: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        Checkpoint.decode(token)


def test_hlc_parts() -> None:
    hlc = "1764068000123-00ff-client-aa"
    assert physical_ms(hlc) == 1764068000123
    assert belongs_to(hlc, "client-aa")
    assert not belongs_to(hlc, "client-bb")
    assert not belongs_to("1764068000123-00FF-client-aa", "client-aa")  # lowercase hex only
    assert too_far_ahead(hlc, now_ms=1764068000123 - 60_001, max_skew_seconds=60)
    assert not too_far_ahead(hlc, now_ms=1764068000123 - 60_000, max_skew_seconds=60)
