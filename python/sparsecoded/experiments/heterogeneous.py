"""Completion on devices of unequal capacity, with the partial work of slow devices counted.

Device i stores ``capacities[i]`` coded blocks (``design_mv(..., capacities=...)``),
against a dense MDS code and the uncoded split on the same block layout.  The
largest devices straggle first (the worst case for every scheme), 0 .. s + 1
of them, under each model; every round records which decoded results came
from devices that had not finished all their blocks.

``--emulate N``: live on N emulated edge hosts with quotas in proportion to
their capacities, the stragglers throttled to ``--slow-cpu`` of a core
(:mod:`.edge`, root and Linux).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..decode import Decoder
from ..design import MVCode, design_mv
from ..jobs import CodedMatVec
from . import edge, inputs
from .completion import add_round_arguments, plot_rounds_and_replay
from .completion import summary as completion_summary
from .measure import (
    add_pool_arguments,
    add_straggler_arguments,
    measure_workers,
    model_names,
    open_pool,
    straggler_sweep,
)
from .record import MODE_SIMULATED, progress, pyplot, save

SCHEMES = ("sparse", "mds", "uncoded")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inputs.add_matrix_arguments(parser, sweep=False)
    g = parser.add_argument_group("code")
    g.add_argument("--workers", default="6", help="devices n (default 6)")
    g.add_argument(
        "--capacities",
        default=None,
        help="blocks per device, a comma list, one per device (default 1,2,3,1,2,3,...)",
    )
    g.add_argument(
        "--k", default=None, help="row blocks k (default: total capacity - s x largest capacity)"
    )
    g.add_argument(
        "--stragglers",
        type=int,
        default=None,
        help="devices to tolerate when --k is not given (default 1)",
    )
    g.add_argument(
        "--schemes", default=None, help="comma list of sparse, mds, uncoded (default all three)"
    )
    add_round_arguments(parser)
    add_straggler_arguments(parser)
    add_pool_arguments(parser)
    edge.add_arguments(parser)


def _baselines(
    sparse_code: MVCode, k: int, chosen: Sequence[str], rng: np.random.Generator
) -> dict[str, MVCode]:
    """Dense MDS and uncoded codes on the sparse code's block layout (same owners)."""
    owner: list[int] = np.asarray(sparse_code.owner).tolist()
    N = sparse_code.n_rows
    codes: dict[str, Any] = {"sparse": sparse_code}
    if "mds" in chosen:
        # i.i.d. Gaussian coefficients: generic in the sense of MVCode.generic
        codes["mds"] = MVCode.from_matrix(
            rng.standard_normal((N, k)),
            owner=owner,
            stragglers=int(sparse_code.stragglers),
            scheme="mds",
            generic=True,
        )
    if "uncoded" in chosen:
        # each device stores its share of the k blocks, no redundancy
        m = min(N, k)
        E = sp.csr_array((np.ones(m), (np.arange(m), np.arange(m))), shape=(N, k))
        codes["uncoded"] = MVCode.from_matrix(E, owner=owner, stragglers=0, scheme="uncoded")
    return {s: c for s, c in codes.items() if s in chosen}


def partial_work(op: Any, owner: np.ndarray, encoding: Any) -> dict[str, Any]:
    """Which decoded results came from devices that had not finished all their blocks."""
    weights = np.diff(sp.csr_array(encoding).indptr)
    blocks = np.bincount(owner[weights > 0], minlength=int(owner.max()) + 1)
    per_dev: dict[int, int] = {}
    for r in op.report.rows_used:
        d = int(owner[int(r)])
        per_dev[d] = per_dev.get(d, 0) + 1
    partial = {d: c for d, c in per_dev.items() if c < blocks[d]}
    return {
        "results_used_per_device": {str(d): c for d, c in sorted(per_dev.items())},
        "partial_devices": sorted(partial),
        "results_from_partial_devices": int(sum(partial.values())),
    }


def run(
    *,
    matrix: str | None = None,
    size: Sequence[int] = (32000, 20000),
    density: Any = "0.01",
    seed: int = 0,
    workers: Any = "6",
    capacities: Any = None,
    k: Any = None,
    stragglers: int | None = None,
    schemes: Any = None,
    reps: int = 5,
    rounds: int = 3,
    warmup: int = 1,
    models: Any = "fixed,shiftexp,crash",
    delay: float = 0.5,
    live: bool = False,
    dask: bool = False,
    timeout: float = 60.0,
    no_progress: bool = False,
    emulate: int | None = None,
    slow_cpu: float = 0.1,
    cpu: float | None = None,
    link_mbit: float | None = None,
    columns: int = 32,
) -> dict[str, Any]:
    """Rounds of every scheme with 0 .. s + 1 straggling devices, largest first.

    With ``emulate`` the figures are :func:`.edge.run`'s on that many hosts.
    """
    if emulate is not None:
        return edge.run(
            kind="heterogeneous",
            hosts=emulate,
            k=k,
            slow_cpu=slow_cpu,
            cpu=cpu,
            link_mbit=link_mbit,
            matrix=matrix,
            columns=columns,
            schemes=schemes,
            capacities=capacities,
            rounds=rounds,
            warmup=warmup,
            seed=seed,
            timeout=timeout,
            no_progress=no_progress,
            live=live,
            dask=dask,
        )
    n = inputs.ints(workers)[0]
    caps = inputs.ints(capacities) if capacities else [1 + (i % 3) for i in range(n)]
    if len(caps) != n:
        raise ValueError(
            f"--capacities has {len(caps)} entries, expected one per worker (--workers {n})"
        )
    kk = (
        inputs.ints(k)[0]
        if k
        else sum(caps) - max(caps) * (1 if stragglers is None else stragglers)
    )
    chosen = inputs.schemes(schemes, ",".join(SCHEMES), allowed=SCHEMES)
    model_list = model_names(models)
    sparse_code = design_mv(n, kk, "sparse", seed=seed, capacities=caps)
    owner = np.asarray(sparse_code.owner)
    rng = np.random.default_rng([seed, 6])  # the MDS coefficients, then x
    codes = _baselines(sparse_code, kk, chosen, rng)
    inp = inputs.matrix_input(matrix, size, inputs.floats(density)[0] if not matrix else 0.0, seed)
    A = inp.A
    x = rng.standard_normal(A.shape[1])
    y_ref = A @ x
    s_dev = int(sparse_code.stragglers)
    # the worst case for every scheme: the largest devices straggle first (ties in seeded order)
    tie = np.random.default_rng([seed, 7]).permutation(n)
    order = sorted(range(n), key=lambda d: (-caps[d], tie[d]))
    counts = list(range(0, s_dev + 2))
    results: dict[str, Any] = {}
    steps = len(codes) * len(model_list) * len(counts) * rounds
    with (
        open_pool(n, live=live, dask=dask, timeout=timeout) as (pool, mode, backend),
        progress(steps, "heterogeneous", no_progress) as bar,
    ):
        for scheme, code in codes.items():
            with CodedMatVec(A, code, pool) as op:
                report = op.report
                if report is None:  # set by the constructor, once the blocks are placed
                    raise RuntimeError("CodedMatVec has no report after placing its blocks")
                encode_seconds = report.encode_seconds
                row_times = None
                if mode == MODE_SIMULATED:
                    row_times = measure_workers(A, code, x, reps)["row_cpu_times"]
                per_model = straggler_sweep(
                    op,
                    pool,
                    mode=mode,
                    x=x,
                    y_ref=y_ref,
                    models=model_list,
                    counts=counts,
                    slow=lambda j: sorted(order[:j]),
                    tolerated=s_dev,
                    delay=delay,
                    seed=seed,
                    rounds=rounds,
                    warmup=warmup,
                    timeout=timeout,
                    row_times=row_times,
                    owner=owner,
                    decoder=Decoder(code.encoding) if row_times is not None else None,
                    bar=bar,
                    label=scheme,
                    who="straggler_devices",
                    annotate=functools.partial(partial_work, owner=owner, encoding=code.encoding),
                )
            for rows in per_model.values():
                for row in rows:
                    ok = [r for r in row["rounds"] if r["ok"]]
                    row["results_from_partial_devices"] = max(
                        (r["results_from_partial_devices"] for r in ok), default=0
                    )
            results[scheme] = {
                "weight": int(code.weight),
                "stragglers_tolerated": int(code.stragglers),
                "encode_seconds": encode_seconds,
                "coded_blocks": int(code.n_rows),
                "models": per_model,
            }
    return {
        "input": inp.meta,
        "workers": n,
        "capacities": caps,
        "k": kk,
        "s_devices": s_dev,
        "virtual_workers": int(sparse_code.n_rows),
        "owner": owner.tolist(),
        "models": model_list,
        "counts": counts,
        "backend": backend,
        "mode": mode,
        "schemes": results,
    }


def plot(record: dict[str, Any], path: str) -> None:
    if edge.is_edge(record):
        return edge.plot(record, path)
    plt = pyplot()
    models = record["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, model_name in zip(axes[0], models, strict=True):
        plot_rounds_and_replay(ax, record, model_name, lambda scheme, r: f"{scheme}, rounds")
        ax.axvline(record["s_devices"] + 0.5, color="gray", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("straggling devices")
        ax.set_ylabel("completion (ms, log)")
        ax.set_title(model_name, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Heterogeneous devices, capacities {record['capacities']}, k={record['k']}", fontsize=10
    )
    save(fig, path)


def summary(record: dict[str, Any]) -> list[str]:
    return completion_summary(record)
