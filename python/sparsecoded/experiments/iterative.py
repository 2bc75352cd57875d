"""Power iteration with the coded blocks placed once: per-iteration times, against scipy.

The iteration runs on A when it is square, else on A^T A (two coded jobs);
every iterate is compared with scipy's, and the final eigenvalue estimate
with ARPACK's (``eigsh``/``eigs``, or ``svds`` squared).  ``--stragglers``
workers straggle in every iteration under the first of ``--models``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..design import design_mv
from ..jobs import CodedMatVec
from . import inputs
from .measure import (
    add_pool_arguments,
    add_straggler_arguments,
    model_names,
    open_pool,
    straggler_model,
    straggler_order,
)
from .record import headline, progress, pyplot, save


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inputs.add_matrix_arguments(parser, sweep=False)
    g = parser.add_argument_group("code")
    g.add_argument("--workers", default="8", help="workers n (default 8)")
    g.add_argument("--k", default="6", help="row blocks k (default 6)")
    g.add_argument(
        "--schemes",
        default=None,
        help="comma list of sparse, uncoded, replication, mds, polynomial, orthopoly "
        "(default sparse,mds,uncoded)",
    )
    g.add_argument(
        "--stragglers", type=int, default=None, help="workers that straggle in every iteration"
    )
    g = parser.add_argument_group("measurement")
    g.add_argument("--iters", type=inputs.at_least(1), default=30, help="iterations (default 30)")
    add_straggler_arguments(parser)
    add_pool_arguments(parser)


def _reference_eigenvalue(A: sp.csr_array, square: bool) -> float | None:
    import scipy.sparse.linalg as spla

    if not square:
        return float(spla.svds(A, k=1, return_singular_vectors=False)[0] ** 2)
    try:
        if (A - A.T).count_nonzero() == 0:
            return float(spla.eigsh(A, k=1, which="LM", return_eigenvectors=False)[0])
        return float(np.abs(spla.eigs(A, k=1, which="LM", return_eigenvectors=False)[0]))
    except Exception:  # noqa: BLE001 - ARPACK may not converge; the comparison then uses the iterates only
        return None


def _coded_iterations(
    ops: list[Any], x0: np.ndarray, xs_ref: list[np.ndarray], iters: int, bar: Any
) -> dict[str, Any]:
    per_iter, diffs, lams, cached, failed = [], [], [], 0, None
    v = x0.copy()
    try:
        for it in range(iters):
            t0 = time.perf_counter()
            sim = 0.0
            u = v
            for op in ops:
                u = op @ u
                sim += op.report.round_seconds + op.report.decode_seconds
                cached += int(op.report.decode_cached)
            wall = time.perf_counter() - t0
            lams.append(float(v @ u))
            v = u / np.linalg.norm(u)
            per_iter.append({"completion_seconds": sim, "wall_seconds": wall})
            diffs.append(float(np.linalg.norm(v - xs_ref[it])))
            bar.update(1)
    except Exception as exc:  # noqa: BLE001 - a failed iteration is a result, recorded
        failed = f"{type(exc).__name__}: {exc}"
    return {
        "per_iteration": per_iter,
        "diffs": diffs,
        "lams": lams,
        "cached": cached,
        "failed": failed,
    }


def run(
    *,
    matrix: str | None = None,
    size: Sequence[int] = (32000, 20000),
    density: Any = "0.01",
    seed: int = 0,
    workers: Any = "8",
    k: Any = "6",
    schemes: Any = None,
    stragglers: int | None = None,
    iters: int = 30,
    models: Any = "fixed,shiftexp,crash",
    delay: float = 0.5,
    live: bool = False,
    dask: bool = False,
    timeout: float = 60.0,
    no_progress: bool = False,
) -> dict[str, Any]:
    """Power iteration per scheme, ``iters`` steps, beside scipy's own."""
    n, kk = inputs.ints(workers)[0], inputs.ints(k)[0]
    chosen = inputs.schemes(schemes, "sparse,mds,uncoded")
    first_model = model_names(models)[0]
    inp = inputs.matrix_input(matrix, size, inputs.floats(density)[0] if not matrix else 0.0, seed)
    A = inp.A
    square = A.shape[0] == A.shape[1]
    rng = np.random.default_rng([seed, 5])
    x0 = rng.standard_normal(A.shape[1])
    x0 /= np.linalg.norm(x0)
    At = sp.csr_array(A.T)

    def step_ref(v: np.ndarray) -> np.ndarray:
        return A @ v if square else At @ (A @ v)

    t0 = time.perf_counter()
    xs_ref, lam_ref_iter, v = [], [], x0.copy()
    for _ in range(iters):
        u = step_ref(v)
        lam_ref_iter.append(float(v @ u))
        v = u / np.linalg.norm(u)
        xs_ref.append(v)
    scipy_iter_seconds = (time.perf_counter() - t0) / iters
    lam_true = _reference_eigenvalue(A, square)
    slow = straggler_order(n, kk, seed)[: stragglers or 0]
    model = straggler_model(first_model, slow, delay, seed) if slow else None
    results: dict[str, Any] = {}
    with (
        open_pool(n, live=live, dask=dask, timeout=timeout) as (pool, mode, backend),
        progress(len(chosen) * iters, "iterative", no_progress) as bar,
    ):
        for scheme in chosen:
            code = design_mv(n, kk, scheme, seed=seed)
            bar.set_postfix_str(scheme)
            ops = [CodedMatVec(A, code, pool, stragglers=model)]
            if not square:
                ops.append(CodedMatVec(At, code, pool, stragglers=model))
            try:
                it = _coded_iterations(ops, x0, xs_ref, iters, bar)
            finally:
                setup = sum(
                    op.report.encode_seconds + op.report.place_seconds for op in ops if op.report
                )
                for op in ops:
                    op.close()
            t_iter = [p["completion_seconds"] for p in it["per_iteration"]]
            lams, diffs = it["lams"], it["diffs"]
            results[scheme] = {
                "weight": int(code.weight),
                "iterations": len(it["per_iteration"]),
                "failed": it["failed"],
                "setup_seconds": setup,
                "iteration_seconds_median": statistics.median(t_iter) if t_iter else None,
                "per_iteration": it["per_iteration"],
                "eigenvalue_estimates": lams,
                "max_iterate_difference_to_scipy": max(diffs) if diffs else None,
                "final_eigenvalue": lams[-1] if lams else None,
                "eigenvalue_rel_error_to_scipy_iteration": abs(lams[-1] - lam_ref_iter[-1])
                / abs(lam_ref_iter[-1])
                if lams
                else None,
                "decode_cache_hits": it["cached"],
                "rounds": len(it["per_iteration"]) * len(ops),
                "mode": mode,
            }
    return {
        "input": inp.meta,
        "workers": n,
        "k": kk,
        "iteration": "power iteration on " + ("A" if square else "A^T A"),
        "iters": iters,
        "stragglers": slow,
        "straggler_model": repr(model) if model else "none",
        "backend": backend,
        "mode": mode,
        "scipy_iteration_seconds": scipy_iter_seconds,
        "scipy_eigenvalue_estimates": lam_ref_iter,
        "reference_eigenvalue": lam_true,
        "reference": "scipy.sparse.linalg eigsh/eigs (square) or svds^2 (rectangular)",
        "schemes": results,
    }


def plot(record: dict[str, Any], path: str) -> None:
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    ref = record["reference_eigenvalue"] or record["scipy_eigenvalue_estimates"][-1]
    it = np.arange(1, len(record["scipy_eigenvalue_estimates"]) + 1)
    a1.semilogy(
        it,
        np.abs(np.array(record["scipy_eigenvalue_estimates"]) - ref) / abs(ref) + 1e-17,
        "k-",
        lw=3,
        alpha=0.4,
        label="scipy A @ x",
    )
    for i, (scheme, r) in enumerate(record["schemes"].items()):
        lams = np.array(r["eigenvalue_estimates"])
        if len(lams):
            steps = np.arange(1, len(lams) + 1)
            a1.semilogy(
                steps, np.abs(lams - ref) / abs(ref) + 1e-17, "--", color=f"C{i}", label=scheme
            )
            a2.plot(
                steps,
                [p["completion_seconds"] * 1e3 for p in r["per_iteration"]],
                ".-",
                color=f"C{i}",
                label=scheme,
            )
    a1.set_xlabel("iteration")
    a1.set_ylabel("eigenvalue relative error")
    a1.legend(fontsize=8)
    a2.set_xlabel("iteration")
    a2.set_yscale("log")
    a2.set_ylabel(f"iteration time (ms, {record['mode']}, log)")
    a2.legend(fontsize=8)
    fig.suptitle(
        f"Power iteration on {record['input'].get('name', 'random')} "
        f"{tuple(record['input']['shape'])}",
        fontsize=11,
    )
    save(fig, path)


def summary(record: dict[str, Any]) -> list[str]:
    out = [headline(record)]
    for s, r in record.get("schemes", {}).items():
        t = r["iteration_seconds_median"]
        out.append(
            f"  {s:<8} {r['iterations']} iterations, "
            f"median {t * 1e3 if t else float('nan'):.2f} ms, "
            f"max iterate diff to scipy {r['max_iterate_difference_to_scipy']}"
        )
    return out
