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


def prime(platforms: tuple[str, ...], outcomes: tuple[str, ...]) -> None:
    """Create the series of every platform and outcome at 0 (reason `none`), so a fresh stack
    serves the families before the first push."""
    for platform in platforms:
        PUSH_THROTTLED.labels(platform)
        for outcome in outcomes:
            PUSH_OUTCOMES.labels(platform, outcome, "none")
