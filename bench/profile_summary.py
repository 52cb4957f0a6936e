"""Summarize a py-spy raw (collapsed stacks) profile: the share of samples under each of the
given functions (inclusive) and the top functions by own samples.

    .venv/bin/python -m bench.profile_summary worker.txt send_chunk send_many insert_many
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def main() -> None:
    path, names = sys.argv[1], sys.argv[2:]
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1].split(" (")[0]] += n
        for name in names:
            if any(f.startswith(f"{name} (") for f in frames):
                inclusive[name] += n
    print(f"{total} busy samples\n")
    print("| under | share |\n| --- | ---: |")
    for name in names:
        print(f"| `{name}` | {inclusive[name] / total:.0%} |")
    print("\n| own time | share |\n| --- | ---: |")
    for name, n in own.most_common(12):
        print(f"| `{name}` | {n / total:.0%} |")


if __name__ == "__main__":
    main()
