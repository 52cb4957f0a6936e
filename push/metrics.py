"""Push outcome counters (SPEC §6): one per platform, outcome and provider reason.

Reasons are the providers' own bounded codes (`Unregistered`, `QUOTA_EXCEEDED`, `429`...),
never free text, so the label set stays small.
"""

from __future__ import annotations

from prometheus_client import Counter

PUSH_OUTCOMES = Counter(
    "offgrid_push_outcomes_total",
    "Push sends by platform, outcome and provider reason",
    ["platform", "outcome", "reason"],
)
PUSH_THROTTLED = Counter(
    "offgrid_push_throttled_total",
    "Chunks paused because a provider's shared send rate was reached",
    ["platform"],
)
