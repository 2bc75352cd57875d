"""Per-device computation time and storage of one ``A @ x`` per scheme, against density, n and k.

Every device's coded blocks are built with the encoding kernel and its
products timed together in this process, one device at a time
(single-threaded kernel, median of ``--reps``), so that devices never compete
for cores.  With ``--ka`` and ``--kb`` the product is matrix-matrix,
``A @ B``: a device stores its distinct coded slots of A and B (several on a
finer partition, docs/theory.md section 12), each encoded once, and computes
every product the code gives it, one call per product as the coded jobs do
(``device_time_grouped``: the same products with the slots that share a
factor side by side, one call per shared slot).  Figures are per device:
the nonzeros it stores, its compute time, and ``device_load()``; the ratios
``device_ratios`` are against our fine design ("fine", or "sparse" for
matrix-matrix, whose default is the fine design).  A seed authors' scheme
undefined at the parameters (``beta-level`` needs ``k | n``) is recorded as
not applicable, with the reason.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..design import (
    MM_EXTRA_SCHEMES,
    MM_SCHEMES,
    MV_EXTRA_SCHEMES,
    MV_SCHEMES,
    design_mm,
    design_mv,
)
from . import inputs
from .measure import measure_workers, measure_workers_mm
from .record import MODE_SIMULATED, headline, progress, pyplot, save

DEFAULT_SCHEMES = "sparse,mds,polynomial,orthopoly,uncoded"
MV_ALLOWED = (*MV_SCHEMES, *MV_EXTRA_SCHEMES)
MM_ALLOWED = (*MM_SCHEMES, *MM_EXTRA_SCHEMES)
# the seed authors' schemes exist only at some parameters: elsewhere "not applicable"
AUTHORS = ("lcm-optimal", "beta-level", "unified")
# default --reps: matrix-vector products are short, matrix-matrix ones are not
DEFAULT_REPS_MV, DEFAULT_REPS_MM = 5, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inputs.add_matrix_arguments(parser)
    g = parser.add_argument_group("code")
    g.add_argument("--workers", default="20", help="workers n; a comma list sweeps it (default 20)")
    g.add_argument("--k", default="16", help="row blocks k; a comma list sweeps it (default 16)")
    g.add_argument(
        "--schemes",
        default=None,
        help="comma list of sparse, uncoded, replication, mds, polynomial, orthopoly; "
        "coarse, fine (our sparse design on the coarse / a finer partition); the seed authors' "
        "lcm-optimal, beta-level (matrix-vector) or unified, beta-level, and rkrp "
        f"(matrix-matrix) (default {DEFAULT_SCHEMES})",
    )
    g.add_argument("--ka", type=int, default=None, help="matrix-matrix A @ B: row blocks of A")
    g.add_argument("--kb", type=int, default=None, help="... and column blocks of B")
    g.add_argument(
        "--b-columns",
        type=inputs.at_least(1),
        default=None,
        help="matrix-matrix, random input: columns of B (default A's rows: B of A's transposed "
        "shape); B has A's density",
    )
    g = parser.add_argument_group("measurement")
    g.add_argument(
        "--reps",
        type=inputs.at_least(1),
        default=None,
        help=f"timed repetitions per figure (median; default {DEFAULT_REPS_MV}, "
        f"{DEFAULT_REPS_MM} for matrix-matrix)",
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


def applicable(r: dict[str, Any]) -> bool:
    """False for a scheme recorded as not defined at the parameters."""
    return bool(r.get("applicable", True))


def ratios(schemes: dict[str, Any], key: str, ours: str = "sparse") -> dict[str, float]:
    """``other/ours`` of ``key`` for every other scheme."""
    if ours not in schemes or not applicable(schemes[ours]):
        return {}
    return {
        f"{name}/{ours}": schemes[name][key] / schemes[ours][key]
        for name in schemes
        if name != ours and applicable(schemes[name]) and schemes[ours][key] > 0
    }


DEVICE_KEYS = (
    "device_nnz_median",
    "device_nnz_max",
    "device_time_median",
    "device_time_max",
    # matrix-matrix: a device's B-slots (or A-slots) side by side, one product per shared slot
    "device_time_grouped_median",
    "device_time_grouped_max",
)


def ours_fine(schemes: dict[str, Any], matmat: bool) -> str | None:
    """Our fine design's entry: "fine", else "sparse" (matrix-matrix: the fine default)."""
    for name in ("fine", "sparse") if matmat else ("fine",):
        if name in schemes and applicable(schemes[name]):
            return name
    return None


def device_ratios(schemes: dict[str, Any], ours: str | None) -> dict[str, dict[str, float]]:
    """``other/ours`` of the per-device medians and maxima, for every other scheme."""
    if ours is None:
        return {}
    base = schemes[ours]
    out = {}
    for name, r in schemes.items():
        if name == ours or not applicable(r):
            continue
        out[f"{name}/{ours}"] = {
            key.removeprefix("device_"): r[key] / base[key]
            for key in DEVICE_KEYS
            if key in r and key in base and base[key] > 0
        }
    return out


def _not_applicable(name: str, exc: Exception, n: int, k: int) -> dict[str, Any]:
    return {
        "scheme": name,
        "applicable": False,
        "reason": " ".join(str(exc).split()),
        "workers": n,
        "k": k,
        "mode": MODE_SIMULATED,
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
    b_columns: int | None = None,
    reps: int | None = None,
    clock: str = "cpu",
    no_progress: bool = False,
) -> dict[str, Any]:
    """Time each device of each scheme at each (density, n, k); the first point leads."""
    densities = inputs.floats(density) if not matrix else [float("nan")]
    ns, ks = inputs.ints(workers), inputs.ints(k)
    if bool(ka) != bool(kb):
        raise ValueError("matrix-matrix needs both --ka and --kb")
    if ka and kb:  # both or neither, checked above
        ks = [ka * kb]
    if b_columns is not None and (not ka or matrix):
        raise ValueError("--b-columns is for matrix-matrix (--ka, --kb) on a random input")
    matmat = bool(ka and kb)
    if reps is None:
        reps = DEFAULT_REPS_MM if matmat else DEFAULT_REPS_MV
    chosen = inputs.schemes(schemes, DEFAULT_SCHEMES, MM_ALLOWED if matmat else MV_ALLOWED)
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
            B = None
            if ka and kb:
                B = (
                    inputs.random_matrix(inp.A.shape[1], b_columns, d, seed + 1)
                    if b_columns
                    else inputs.mm_partner(inp.A, bool(matrix), seed)
                )
            res: dict[str, Any] = {}
            for scheme in chosen:
                bar.set_postfix_str(f"n={n} k={kk} {scheme}")
                tick = lambda: bar.update(1)  # noqa: E731
                if ka and kb and B is not None:
                    try:
                        mm_code = design_mm(n, ka, kb, scheme, seed=seed, nnz=(inp.A.nnz, B.nnz))
                    except ValueError as exc:
                        if scheme not in AUTHORS:
                            raise
                        res[scheme] = _not_applicable(scheme, exc, n, kk)
                        bar.update(n)
                        continue
                    res[scheme] = measure_workers_mm(
                        inp.A, B, mm_code, reps, tick=tick, clock=clock
                    )
                else:
                    try:
                        mv_code = design_mv(n, kk, scheme, seed=seed)
                    except ValueError as exc:
                        if scheme not in AUTHORS:
                            raise
                        res[scheme] = _not_applicable(scheme, exc, n, kk)
                        bar.update(n)
                        continue
                    res[scheme] = measure_workers(inp.A, mv_code, x, reps, tick=tick, clock=clock)
                res[scheme]["code_scheme"] = res[scheme]["scheme"]
                res[scheme]["scheme"] = scheme
            if "uncoded" in res:
                base_t, base_z = res["uncoded"]["worker_time_median"], res["uncoded"]["nnz_median"]
                for r in res.values():
                    if applicable(r):
                        r["time_ratio_to_uncoded"] = r["worker_time_median"] / base_t
                        r["nnz_ratio_to_uncoded"] = r["nnz_median"] / max(1, base_z)
            ours = ours_fine(res, matmat)
            sweep.append(
                {
                    "density": inp.meta["density"],
                    "requested_density": None if math.isnan(d) else d,
                    "workers": n,
                    "k": kk,
                    "input": inp.meta,
                    "input_b": None if B is None else {"shape": list(B.shape), "nnz": int(B.nnz)},
                    "schemes": res,
                    "ratios": ratios(res, "worker_time_median"),
                    "nnz_ratios": ratios(res, "nnz_median"),
                    "ours_fine": ours,
                    "device_ratios": device_ratios(res, ours),
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
        "ours_fine": first["ours_fine"],
        "device_ratios": first["device_ratios"],
        "input_b": first["input_b"],
        "reps": reps,
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
    cols = 3 if multi else 2
    fig, axes = plt.subplots(1, cols, figsize=(5.2 * cols, 4.2), squeeze=False)
    sch = {name: r for name, r in record["schemes"].items() if applicable(r)}
    names = list(sch)
    panels = (
        (axes[0][0], "worker_times", 1e3, "compute per device, all its products (ms)"),
        (axes[0][1], "worker_nnz", 1e-6, "nonzeros stored per device (millions)"),
    )
    for ax, key, scale, ylabel in panels:
        for i, name in enumerate(names):
            r = sch[name]
            vals = [v * scale for v in r.get(key, []) if v is not None]
            if key == "worker_times":
                med = r["worker_time_median"] * scale
            else:
                med = r.get("device_nnz_median", r["nnz_median"]) * scale
            ax.bar(i, med, color=f"C{i}", alpha=0.35, label=f"{name} ({_weight_text(r)})")
            ax.scatter(
                np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)),
                vals,
                s=8,
                color=f"C{i}",
            )
            grouped = r.get("device_time_grouped_median")
            if key == "worker_times" and grouped is not None and grouped != r["worker_time_median"]:
                ax.hlines(grouped * scale, i - 0.4, i + 0.4, colors="k", lw=1.5)
                ax.annotate("grouped", (i, grouped * scale), fontsize=7, ha="center", va="bottom")
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    p = sweep[0]
    what = (
        f"k_a x k_b = {record['mm_blocks'][0]} x {record['mm_blocks'][1]}"
        if record.get("mm_blocks")
        else f"k={p['k']}"
    )
    missing = [n for n, r in record["schemes"].items() if not applicable(r)]
    axes[0][0].set_title(
        f"n={p['workers']}, {what}, density {p['density']:.2g}"
        + (f" ({', '.join(missing)}: n/a)" if missing else ""),
        fontsize=9,
    )
    axes[0][1].set_title("bars: median device; dots: every device", fontsize=9)
    if multi:
        _plot_ratios(axes[0][2], sweep, list(record["schemes"]))
    fig.suptitle("Per-device compute and storage (measured one device at a time)", fontsize=11)
    save(fig, path)


def _weight_text(r: dict[str, Any]) -> str:
    if "weight_a" in r:
        return f"w={r['weight_a']}x{r['weight_b']}, s={r['stragglers']}"
    return f"w={r['weight']}, s={r['stragglers']}"


def _plot_ratios(ax: Any, sweep: list[dict[str, Any]], names: list[str]) -> None:
    xs_key = (
        "density"
        if len({q["density"] for q in sweep}) > 1
        else ("k" if len({q["k"] for q in sweep}) > 1 else "workers")
    )
    both = len({q["k"] for q in sweep}) > 1 and len({q["workers"] for q in sweep}) > 1
    if both and xs_key != "density":  # n and k both move: one tick per point
        sweep = [{**q, "point": i} for i, q in enumerate(sweep)]
        ax.set_xticks(
            range(len(sweep)), [f"n={q['workers']}\nk={q['k']}" for q in sweep], fontsize=8
        )
        xs_key = "point"
    # against our fine design where the sweep has it, else against "sparse" (medians)
    fine = any(q.get("ours_fine") for q in sweep)
    for name in names:
        xs, ys = [], []
        for q in sweep:
            if fine:
                v = q.get("device_ratios", {}).get(f"{name}/{q.get('ours_fine')}", {})
                y = v.get("time_max")
            else:
                y = q["ratios"].get(f"{name}/sparse")
            if y is not None:
                xs.append(q[xs_key])
                ys.append(y)
        if xs:
            ax.plot(xs, ys, "o-", label=f"{name} / {'ours fine' if fine else 'sparse'}")
    ax.axhline(1.0, color="gray", lw=0.8)
    if xs_key == "density":
        ax.set_xscale("log")
    ax.set_xlabel("" if xs_key == "point" else xs_key)
    ax.set_ylabel(
        "device compute ratio (slowest device)" if fine else "device compute ratio (median)"
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def summary(record: dict[str, Any]) -> list[str]:
    out = [headline(record)]
    for point in record.get("sweep", [{"schemes": record.get("schemes", {})}]):
        if len(record.get("sweep", [])) > 1:
            out.append(f" n={point['workers']} k={point['k']} density {point['density']:.3g}")
        for s, r in point["schemes"].items():
            if not applicable(r):
                out.append(f"  {s:<12} not applicable: {r['reason']}")
                continue
            load = r.get("device_load_max")
            out.append(
                f"  {s:<12} {_weight_text(r):<14} "
                f"nnz/device median {r.get('device_nnz_median', r['nnz_median']):>10.0f} "
                f"max {r.get('device_nnz_max', r['nnz_median']):>10.0f}  "
                f"compute median {r['worker_time_median'] * 1e3:8.3f} ms "
                f"max {r.get('device_time_max', r['worker_time_max']) * 1e3:8.3f} ms"
                + (f"  load max {load:.3f}" if load is not None else "")
                + (
                    f"  grouped median {r['device_time_grouped_median'] * 1e3:.3f} ms"
                    f" max {r['device_time_grouped_max'] * 1e3:.3f} ms"
                    if "device_time_grouped_median" in r
                    else ""
                )
            )
        ours = point.get("ours_fine")
        for key, v in point.get("device_ratios", {}).items():
            nan = float("nan")
            out.append(
                f"  {key}: nnz median {v.get('nnz_median', nan):.2f}x, "
                f"max {v.get('nnz_max', nan):.2f}x; compute median "
                f"{v.get('time_median', nan):.2f}x, max {v.get('time_max', nan):.2f}x"
                + (
                    f"; grouped median {v['time_grouped_median']:.2f}x, "
                    f"max {v['time_grouped_max']:.2f}x"
                    if "time_grouped_median" in v
                    else ""
                )
            )
        if ours is None:
            out += [f"  {k}: {v:.2f}x" for k, v in point.get("ratios", {}).items()]
    return out
