"""Per-worker computation time of one ``A @ x`` per scheme, against density, n and k.

Every worker's coded block is built with the encoding kernel and its product
timed in this process, one worker at a time (single-threaded kernel, median
of ``--reps``), so that workers never compete for cores.  With ``--ka`` and
``--kb`` the product is matrix-matrix, ``A @ B``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..design import design_mm, design_mv
from . import inputs
from .measure import measure_workers, measure_workers_mm
from .record import MODE_SIMULATED, headline, progress, pyplot, save

DEFAULT_SCHEMES = "sparse,mds,polynomial,orthopoly,uncoded"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inputs.add_matrix_arguments(parser)
    g = parser.add_argument_group("code")
    g.add_argument("--workers", default="20", help="workers n; a comma list sweeps it (default 20)")
    g.add_argument("--k", default="16", help="row blocks k; a comma list sweeps it (default 16)")
    g.add_argument(
        "--schemes",
        default=None,
        help=f"comma list of sparse, uncoded, replication, mds, polynomial, orthopoly, rkrp "
        f"(matrix-matrix) (default {DEFAULT_SCHEMES})",
    )
    g.add_argument("--ka", type=int, default=None, help="matrix-matrix A @ B: row blocks of A")
    g.add_argument("--kb", type=int, default=None, help="... and column blocks of B")
    g = parser.add_argument_group("measurement")
    g.add_argument(
        "--reps",
        type=inputs.at_least(1),
        default=5,
        help="timed repetitions per figure (median; default 5)",
    )
    g.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="the worker's CPU time (default; immune to time slicing on a busy machine) "
        "or elapsed time; both are recorded",
    )


def sweep_points(densities: list[float], ns: list[int], ks: list[int]) -> list[tuple]:
    """Every (density, n, k) with 1 <= k <= n; none at all is an error."""
    points = [(d, n, k) for d in densities for n in ns for k in ks if 1 <= k <= n]
    if not points:
        raise ValueError(f"no valid (n, k) with k <= n among --workers {ns} and --k {ks}")
    return points


def ratios(schemes: dict[str, Any], key: str, ours: str = "sparse") -> dict[str, float]:
    """``other/ours`` of ``key`` for every other scheme."""
    if ours not in schemes:
        return {}
    return {
        f"{name}/{ours}": schemes[name][key] / schemes[ours][key]
        for name in schemes
        if name != ours and schemes[ours][key] > 0
    }


def run(
    *,
    matrix: str | None = None,
    size: Sequence[int] = (32000, 20000),
    density: Any = "0.01",
    seed: int = 0,
    workers: Any = "20",
    k: Any = "16",
    schemes: Any = None,
    ka: int | None = None,
    kb: int | None = None,
    reps: int = 5,
    clock: str = "cpu",
    no_progress: bool = False,
) -> dict[str, Any]:
    """Time each worker of each scheme at each (density, n, k); the first point leads."""
    densities = inputs.floats(density) if not matrix else [float("nan")]
    ns, ks = inputs.ints(workers), inputs.ints(k)
    if bool(ka) != bool(kb):
        raise ValueError("matrix-matrix needs both --ka and --kb")
    if ka and kb:  # both or neither, checked above
        ks = [ka * kb]
    chosen = inputs.schemes(schemes, DEFAULT_SCHEMES)
    points = sweep_points(densities, ns, ks)
    sweep = []
    with progress(sum(n for _, n, _ in points) * len(chosen), "worker-time", no_progress) as bar:
        cache: dict[float, inputs.MatrixInput] = {}
        for d, n, kk in points:
            if d not in cache:
                cache.clear()
                cache[d] = inputs.matrix_input(matrix, size, d, seed)
            inp = cache[d]
            x = np.random.default_rng([seed, 1]).standard_normal(inp.A.shape[1])
            res: dict[str, Any] = {}
            for scheme in chosen:
                bar.set_postfix_str(f"n={n} k={kk} {scheme}")
                tick = lambda: bar.update(1)  # noqa: E731
                if ka and kb:
                    mm_code = design_mm(n, ka, kb, scheme, seed=seed)
                    B = inputs.mm_partner(inp.A, bool(matrix), seed)
                    res[scheme] = measure_workers_mm(
                        inp.A, B, mm_code, reps, tick=tick, clock=clock
                    )
                else:
                    mv_code = design_mv(n, kk, scheme, seed=seed)
                    res[scheme] = measure_workers(inp.A, mv_code, x, reps, tick=tick, clock=clock)
            if "uncoded" in res:
                base_t, base_z = res["uncoded"]["worker_time_median"], res["uncoded"]["nnz_median"]
                for r in res.values():
                    r["time_ratio_to_uncoded"] = r["worker_time_median"] / base_t
                    r["nnz_ratio_to_uncoded"] = r["nnz_median"] / max(1, base_z)
            sweep.append(
                {
                    "density": inp.meta["density"],
                    "requested_density": None if math.isnan(d) else d,
                    "workers": n,
                    "k": kk,
                    "input": inp.meta,
                    "schemes": res,
                    "ratios": ratios(res, "worker_time_median"),
                    "nnz_ratios": ratios(res, "nnz_median"),
                }
            )
    first = sweep[0]
    w_sparse = first["schemes"].get("sparse", {}).get("weight")
    target = 0.8 * first["k"] / w_sparse if w_sparse else None
    return {
        "operation": "matmat" if ka else "matvec",
        "mm_blocks": [ka, kb] if ka else None,
        "input": first["input"],
        "schemes": first["schemes"],
        "ratios": first["ratios"],
        "nnz_ratios": first["nnz_ratios"],
        "targets": {
            "mds/sparse worker time >= 0.8 k / w": target,
            "met": (first["ratios"].get("mds/sparse", 0) >= target) if target else None,
        },
        "sweep": sweep,
        "mode": MODE_SIMULATED,
        "kernel_threads": 1,
    }


def plot(record: dict[str, Any], path: str) -> None:
    plt = pyplot()
    sweep = record["sweep"]
    multi = len(sweep) > 1
    fig, axes = plt.subplots(1, 2 if multi else 1, figsize=(10 if multi else 5.5, 4), squeeze=False)
    ax = axes[0][0]
    sch = record["schemes"]
    names = list(sch)
    for i, name in enumerate(names):
        ts = [t * 1e3 for t in sch[name]["worker_times"] if t is not None]
        ax.bar(
            i,
            sch[name]["worker_time_median"] * 1e3,
            color=f"C{i}",
            alpha=0.35,
            label=f"{name} (w={sch[name]['weight']}), median",
        )
        ax.scatter(np.full(len(ts), i) + np.linspace(-0.15, 0.15, len(ts)), ts, s=8, color=f"C{i}")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("worker compute per A @ x (ms)")
    p = sweep[0]
    ax.set_title(f"n={p['workers']}, k={p['k']}, density {p['density']:.2g}", fontsize=10)
    ax.legend(fontsize=8)
    if multi:
        _plot_ratios(axes[0][1], sweep, names)
    fig.suptitle("Per-worker compute (measured one worker at a time)", fontsize=11)
    save(fig, path)


def _plot_ratios(ax: Any, sweep: list[dict[str, Any]], names: list[str]) -> None:
    xs_key = (
        "density"
        if len({q["density"] for q in sweep}) > 1
        else ("k" if len({q["k"] for q in sweep}) > 1 else "workers")
    )
    for name in names:
        if name == "sparse":
            continue
        xs = [q[xs_key] for q in sweep if f"{name}/sparse" in q["ratios"]]
        ys = [q["ratios"][f"{name}/sparse"] for q in sweep if f"{name}/sparse" in q["ratios"]]
        ax.plot(xs, ys, "o-", label=f"{name} / sparse")
    ax.axhline(1.0, color="gray", lw=0.8)
    if "mds" in names:
        q0 = [q for q in sweep if "mds/sparse" in q["nnz_ratios"]]
        ax.plot(
            [q[xs_key] for q in q0],
            [q["nnz_ratios"]["mds/sparse"] for q in q0],
            "k:",
            label="mds / sparse nonzeros",
        )
        ax.plot(
            [q[xs_key] for q in q0],
            [0.8 * q["k"] / q["schemes"]["sparse"]["weight"] for q in q0],
            "k--",
            lw=0.8,
            label="target 0.8 k / w",
        )
    if xs_key == "density":
        ax.set_xscale("log")
    ax.set_xlabel(xs_key)
    ax.set_ylabel("worker time ratio")
    ax.legend(fontsize=8)


def summary(record: dict[str, Any]) -> list[str]:
    out = [headline(record)]
    for s, r in record.get("schemes", {}).items():
        out.append(
            f"  {s:<11} w={r['weight']:<3} "
            f"worker median {r['worker_time_median'] * 1e3:8.3f} ms"
            f"  nnz median {r['nnz_median']:>10.0f}"
        )
    out += [f"  {k}: {v:.2f}x" for k, v in record.get("ratios", {}).items()]
    return out
