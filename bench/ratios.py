"""Print the benchmark results as a Markdown table of speed-ups over the baseline.

Usage: ``python bench/ratios.py bench.json`` (the file written by
``pytest bench --benchmark-enable --benchmark-json=bench.json``). For each
group the baseline is the scipy entry (the dense-MDS scipy entry in the MDS
group); the ratio is baseline median / entry median, so > 1 means faster.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    groups = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"]].append(b)
    print("| group | baseline median (ms) | entry | median (ms) | speed-up |")
    print("| --- | ---: | --- | ---: | ---: |")
    for group in sorted(groups):
        entries = groups[group]
        base = next(b for b in entries if "scipy" in b["name"])
        t0 = base["stats"]["median"]
        for b in entries:
            if b is base:
                continue
            t = b["stats"]["median"]
            name = b["name"].removeprefix("test_")
            print(f"| {group} | {t0 * 1e3:.1f} | {name} | {t * 1e3:.1f} | {t0 / t:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1])
