"""Shared page reads (sync.scopelog.SharedReads): the live pulls one commit wakes read once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sync.scopelog import SharedReads


def test_pulls_woken_by_one_commit_share_one_page_read_and_each_gets_it_whole() -> None:
    """Fifty readers of the same page at the same watermark, all at once: one read, fifty
    identical pages. A failed read is not shared: the readers waiting on it read for
    themselves."""
    shared = SharedReads()
    reads: list[int] = []
    gate = threading.Event()

    def read() -> list[dict[str, Any]]:
        reads.append(1)
        gate.wait(5)  # the others arrive while this read is in flight
        return [{"key": "k", "seq": 7}]

    key = ("team:x", 6, 7, 100, (), False)
    with ThreadPoolExecutor(50) as pool:
        futures = [pool.submit(shared.get, key, read) for _ in range(50)]
        time.sleep(0.3)
        gate.set()
        pages = [f.result(timeout=10) for f in futures]
    assert len(reads) == 1
    assert all(page == [{"key": "k", "seq": 7}] for page in pages)

    failures = iter([RuntimeError("connection reset")])

    def flaky() -> list[dict[str, Any]]:
        error = next(failures, None)
        if error is not None:
            time.sleep(0.2)
            raise error
        return [{"key": "k", "seq": 9}]

    other = ("team:x", 7, 9, 100, (), False)
    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(shared.get, other, flaky) for _ in range(5)]
        outcomes = []
        for f in futures:
            try:
                outcomes.append(f.result(timeout=10))
            except RuntimeError:
                outcomes.append("failed")
    assert outcomes.count("failed") == 1
    assert outcomes.count([{"key": "k", "seq": 9}]) == 4
