"""Numerical stability per scheme against n: worst-case condition number and real decode errors.

For each n (k = n - s) and scheme, :func:`sparsecoded.certify` bounds the
condition number over responder sets, and ``--trials`` random sets of s
crashed workers are decoded for real on a random matrix and compared with
scipy's ``A @ x``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..design import certify, design_mv
from ..jobs import CodedMatVec
from ..pools.inline import InlinePool
from ..stragglers import Crash
from . import inputs
from .record import MODE_SIMULATED, headline, progress, pyplot, save


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inputs.add_matrix_arguments(parser, size=(2000, 400), files=False, sweep=False)
    g = parser.add_argument_group("code")
    g.add_argument(
        "--workers", default="8,12,16,20,24", help="workers n, a comma list (default 8,12,16,20,24)"
    )
    g.add_argument("--stragglers", type=int, default=4, help="s, so k = n - s (default 4)")
    g.add_argument(
        "--schemes",
        default=None,
        help="comma list of sparse, uncoded, replication, mds, polynomial, orthopoly "
        "(default sparse,mds,polynomial,orthopoly)",
    )
    g = parser.add_argument_group("measurement")
    g.add_argument(
        "--trials",
        type=inputs.at_least(1),
        default=5,
        help="random straggler sets decoded per scheme (default 5)",
    )
    g.add_argument(
        "--max-subsets",
        type=inputs.at_least(1),
        default=20000,
        help="certify enumerates responder sets up to this many (default 20000)",
    )


def _decode_errors(
    A: Any, code: Any, x: np.ndarray, y_ref: np.ndarray, n: int, s: int, seed: int, trials: int
) -> tuple[list[float], list[float]]:
    errs, conds = [], []
    with InlinePool(n) as pool:
        for t in range(trials):
            dead = np.random.default_rng([seed, n, t]).choice(n, s, replace=False)
            # huge max_condition: measure the error of the system actually solved
            with CodedMatVec(
                A, code, pool, stragglers=Crash(workers=dead.tolist()), max_condition=np.inf
            ) as op:
                y = op @ x
                errs.append(float(np.linalg.norm(y - y_ref) / np.linalg.norm(y_ref)))
                report = op.report
                if report is None:  # set by the constructor, once the blocks are placed
                    raise RuntimeError("CodedMatVec has no report after placing its blocks")
                conds.append(float(report.condition))
    return errs, conds


def run(
    *,
    size: Sequence[int] = (2000, 400),
    density: Any = "0.01",
    seed: int = 0,
    workers: Any = "8,12,16,20,24",
    stragglers: int = 4,
    schemes: Any = None,
    trials: int = 5,
    max_subsets: int = 20000,
    no_progress: bool = False,
) -> dict[str, Any]:
    """Certify and decode every scheme at every n with s = ``stragglers``."""
    ns = inputs.ints(workers)
    s = stragglers
    chosen = inputs.schemes(schemes, "sparse,mds,polynomial,orthopoly")
    if all(n - s < 1 for n in ns):
        raise ValueError(f"--stragglers {s} leaves no k = n - s >= 1 for --workers {ns}")
    m, c = size
    d = inputs.floats(density)[0]
    rows_out: list[dict[str, Any]] = []
    rng = np.random.default_rng([seed, 4])
    with progress(len(ns) * len(chosen), "stability", no_progress) as bar:
        for n in ns:
            k = n - s
            if k < 1:
                continue
            A = inputs.random_matrix(max(m, k), c, d, seed + n)
            x = rng.standard_normal(c)
            y_ref = A @ x
            for scheme in chosen:
                bar.set_postfix_str(f"n={n} {scheme}")
                code = design_mv(n, k, scheme, seed=seed)
                t0 = time.perf_counter()
                cert = certify(code, max_subsets=max_subsets, seed=seed)
                cert_s = time.perf_counter() - t0
                errs, conds = _decode_errors(A, code, x, y_ref, n, s, seed, trials)
                rows_out.append(
                    {
                        "workers": n,
                        "k": k,
                        "s": s,
                        "scheme": scheme,
                        "weight": int(code.weight),
                        "worst_condition": float(cert.worst_condition),
                        "certificate_method": cert.method,
                        "straggler_optimal": bool(cert.straggler_optimal),
                        "subsets_checked": int(cert.subsets_checked),
                        "certify_seconds": cert_s,
                        "decode_rel_error_max": max(errs),
                        "decode_rel_error_median": statistics.median(errs),
                        "decode_condition_max": max(conds),
                        "trials": trials,
                        "mode": MODE_SIMULATED,
                    }
                )
                bar.update(1)
    by_scheme: dict[str, Any] = {}
    for r in rows_out:
        by_scheme.setdefault(r["scheme"], []).append(r)
    return {
        "stragglers": s,
        "matrix_size": [m, c],
        "density": d,
        "schemes": by_scheme,
        "rows": rows_out,
        "mode": MODE_SIMULATED,
    }


def plot(record: dict[str, Any], path: str) -> None:
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (scheme, rows) in enumerate(record["schemes"].items()):
        ns = [r["workers"] for r in rows]
        a1.semilogy(ns, [r["worst_condition"] for r in rows], "o-", color=f"C{i}", label=scheme)
        a2.semilogy(
            ns,
            [max(r["decode_rel_error_max"], 1e-17) for r in rows],
            "o-",
            color=f"C{i}",
            label=scheme,
        )
    a1.set_xlabel("workers n")
    a1.set_ylabel("worst-case condition number")
    a2.set_xlabel("workers n")
    a2.set_ylabel("max relative decoding error")
    a1.legend(fontsize=8)
    fig.suptitle(f"Numerical stability, s = {record['stragglers']} stragglers", fontsize=11)
    save(fig, path)


def summary(record: dict[str, Any]) -> list[str]:
    out = [headline(record)]
    for s, rows in record.get("schemes", {}).items():
        out.append(
            f"  {s:<10} worst cond by n: "
            + " ".join(f"{r['workers']}:{_e(r['worst_condition'])}" for r in rows)
        )
    return out


def _e(value: Any) -> str:
    return f"{value:.1e}" if isinstance(value, (int, float)) else str(value)  # "inf" in the JSON
