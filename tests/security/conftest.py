"""Prints the fuzzing summary of test_fuzz.py (operations, requests, statuses) after the run."""

from __future__ import annotations

import pytest

FUZZ_SUMMARY = pytest.StashKey[list[str]]()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(FUZZ_SUMMARY, [])
    if lines:
        terminalreporter.write_sep("-", "schemathesis summary")
        for line in lines:
            terminalreporter.write_line(line)
