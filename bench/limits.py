"""The SpMV / sparse x dense table of bench/README.md: ours, scipy and MKL from one run.

Usage: ``python bench/limits.py RESULTS.json READ_GBS_1T READ_GBS_2T PEAK_GFLOPS_1T PEAK_GFLOPS_2T``
with the read bandwidth and FMA peak (of the vector width that ran) measured by
``bench/cpp/kernel_limits.cpp`` on the same machine. Per entry: median, IQR
(spread), speed-up over scipy and over MKL on the same thread count, and the
fraction of the limit: bytes moved / read bandwidth for SpMV, FLOP/s / peak
for sparse x dense.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str, bw1: float, bw2: float, pk1: float, pk2: float) -> None:
    with open(path) as f:
        data = json.load(f)
    groups = defaultdict(dict)
    for b in data["benchmarks"]:
        who = b["param"] if "param" in b else b["name"]
        who = b["params"].get("who", who)
        groups[b["group"]][who] = b
    print(
        "| group | entry | median (ms) | IQR (ms) | vs scipy"
        " | vs MKL same threads | fraction of limit |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for group in sorted(groups):
        g = groups[group]
        t_scipy = g["scipy"]["stats"]["median"]
        for who in ["scipy", "mkl-1t", "mkl-2t", "ours-1t", "ours-2t"]:
            if who not in g:
                continue
            st = g[who]["stats"]
            t = st["median"]
            nt = 2 if who.endswith("2t") else 1
            info = g[who].get("extra_info", {})
            mkl = g.get(f"mkl-{nt}t")
            vs_mkl = f"{mkl['stats']['median'] / t:.2f}x" if mkl and who.startswith("ours") else ""
            if "bytes" in info:
                frac = info["bytes"] / t / 1e9 / (bw2 if nt == 2 else bw1)
                lim = f"{frac:.0%} of {bw2 if nt == 2 else bw1:.1f} GB/s"
            elif "flops" in info:
                frac = info["flops"] / t / 1e9 / (pk2 if nt == 2 else pk1)
                lim = f"{frac:.1%} of {pk2 if nt == 2 else pk1:.0f} GFLOP/s"
            else:
                lim = ""
            if who.startswith("ours"):
                lim += f" ({info.get('isa', '?')}, {info.get('vector_bits', '?')}-bit)"
            print(
                f"| {group} | {who} | {t * 1e3:.1f} | {st['iqr'] * 1e3:.1f} | "
                f"{t_scipy / t:.2f}x | {vs_mkl} | {lim} |"
            )


if __name__ == "__main__":
    main(sys.argv[1], *map(float, sys.argv[2:6]))
