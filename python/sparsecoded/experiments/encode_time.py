"""Time to build all n coded blocks per scheme, beside dense-MDS blocks built as dense arrays.

Each scheme's blocks are built with the sparse encoding kernel (median of
``--reps``); the baseline densifies the k row blocks of A and mixes them with
numpy (BLAS), as dense codes are usually implemented.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import kernels
from ..design import design_mv
from . import inputs
from .record import MODE_SIMULATED, headline, progress, pyplot, save
from .worker_time import DEFAULT_SCHEMES, ratios, sweep_points


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inputs.add_matrix_arguments(parser, size=(32000, 20000))
    g = parser.add_argument_group("code")
    g.add_argument("--workers", default="20", help="workers n; a comma list sweeps it (default 20)")
    g.add_argument("--k", default="16", help="row blocks k; a comma list sweeps it (default 16)")
    g.add_argument(
        "--schemes",
        default=None,
        help=f"comma list of sparse, uncoded, replication, mds, polynomial, orthopoly "
        f"(default {DEFAULT_SCHEMES})",
    )
    g = parser.add_argument_group("measurement")
    g.add_argument(
        "--reps",
        type=inputs.at_least(1),
        default=5,
        help="timed repetitions per figure (median; default 5)",
    )
    g.add_argument(
        "--threads",
        type=inputs.at_least(1),
        default=1,
        help="threads of the encoding kernel (default 1, like the dense baseline's BLAS "
        "with --blas-threads 1)",
    )
    g.add_argument("--no-dense", action="store_true", help="skip the dense-array MDS baseline")
    g.add_argument(
        "--dense-limit-mb",
        type=float,
        default=4096,
        help="skip the dense-array baseline above this memory (MiB, default 4096)",
    )


def _block_rows(A: sp.csr_array, k: int) -> int:
    return -(-A.shape[0] // k)


def dense_mds_build(A: sp.csr_array, E: sp.csr_array, rows: Sequence[int]) -> float:
    """Seconds to build the given dense-MDS coded blocks as dense arrays.

    This is how dense codes are commonly implemented (every block densified,
    then mixed with BLAS); it is the baseline the earlier research measured its
    encoding speed-up against.
    """
    k = E.shape[1]
    b = _block_rows(A, k)
    Ed = E.toarray()
    t0 = time.perf_counter()
    dense = np.zeros((k, b, A.shape[1]))
    for j in range(k):
        blk = A[j * b : (j + 1) * b].toarray()
        dense[j, : blk.shape[0]] = blk
    for r in rows:
        np.tensordot(Ed[r], dense, axes=(0, 0))
    return time.perf_counter() - t0


def _scheme_times(A: sp.csr_array, code: Any, reps: int, threads: int) -> dict[str, Any]:
    E = sp.csr_array(code.encoding)
    samples, nnz = [], 0
    for _ in range(reps):
        t0 = time.perf_counter()
        blocks = kernels.encode_row_blocks(A, E, n_threads=threads)
        samples.append(time.perf_counter() - t0)
        nnz = int(sum(b.nnz for b in blocks))
        del blocks
    return {
        "weight": int(code.weight),
        "encode_seconds": statistics.median(samples),
        "encode_samples": samples,
        "coded_nnz": nnz,
        "nnz_ratio_to_A": nnz / max(1, A.nnz),
        "mode": MODE_SIMULATED,
    }


def _dense_baseline(A: sp.csr_array, n: int, k: int, seed: int, limit_mb: float) -> dict:
    code = design_mv(n, k, "mds", seed=seed)
    bytes_needed = 8 * k * _block_rows(A, k) * A.shape[1]
    if bytes_needed > limit_mb * 2**20:
        return {
            "skipped": f"needs {bytes_needed / 2**20:.0f} MiB of dense blocks, "
            f"over --dense-limit-mb {limit_mb}"
        }
    return {
        "weight": k,
        "encode_seconds": dense_mds_build(A, sp.csr_array(code.encoding), range(n)),
        "mode": MODE_SIMULATED,
        "how": "blocks densified, mixed with numpy (BLAS)",
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
    reps: int = 5,
    threads: int = 1,
    no_dense: bool = False,
    dense_limit_mb: float = 4096,
    blas_threads: int = 1,
    no_progress: bool = False,
) -> dict[str, Any]:
    """Encode with every scheme at every (density, n, k), and the dense baseline beside them.

    ``blas_threads`` is only recorded (the driver sets it for the dense baseline).
    """
    densities = inputs.floats(density) if not matrix else [float("nan")]
    ns, ks = inputs.ints(workers), inputs.ints(k)
    chosen = inputs.schemes(schemes, DEFAULT_SCHEMES)
    points = sweep_points(densities, ns, ks)
    sweep = []
    steps = len(points) * (len(chosen) + (0 if no_dense else 1))
    with progress(steps, "encode-time", no_progress) as bar:
        for d, n, kk in points:
            inp = inputs.matrix_input(matrix, size, d, seed)
            A = inp.A
            res: dict[str, Any] = {}
            for scheme in chosen:
                bar.set_postfix_str(f"n={n} k={kk} {scheme}")
                res[scheme] = _scheme_times(A, design_mv(n, kk, scheme, seed=seed), reps, threads)
                bar.update(1)
            if not no_dense:
                bar.set_postfix_str(f"n={n} k={kk} dense arrays")
                res["mds-dense-arrays"] = _dense_baseline(A, n, kk, seed, dense_limit_mb)
                bar.update(1)
            timed = {s: r for s, r in res.items() if "encode_seconds" in r}
            sweep.append(
                {
                    "density": inp.meta["density"],
                    "workers": n,
                    "k": kk,
                    "input": inp.meta,
                    "schemes": res,
                    "ratios": ratios(timed, "encode_seconds"),
                }
            )
    first = sweep[0]
    return {
        "input": first["input"],
        "schemes": first["schemes"],
        "ratios": first["ratios"],
        "targets": {
            "mds-dense-arrays/sparse encode >= 100": first["ratios"].get("mds-dense-arrays/sparse")
        },
        "sweep": sweep,
        "mode": MODE_SIMULATED,
        "encode_threads": kernels.resolve_threads(threads),
        "dense_baseline_blas_threads": blas_threads,
    }


def plot(record: dict[str, Any], path: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    sch = {s: r for s, r in record["schemes"].items() if "encode_seconds" in r}
    names = list(sch)
    ax.bar(range(len(names)), [sch[s]["encode_seconds"] * 1e3 for s in names], color="C0")
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("build all n coded blocks (ms, log)")
    p = record["sweep"][0]
    ax.set_title(f"Encoding, n={p['workers']}, k={p['k']}, density {p['density']:.2g}", fontsize=10)
    save(fig, path)


def summary(record: dict[str, Any]) -> list[str]:
    out = [headline(record)]
    for s, r in record.get("schemes", {}).items():
        if "encode_seconds" in r:
            out.append(f"  {s:<17} encode {r['encode_seconds'] * 1e3:9.2f} ms")
    out += [f"  {k}: {v:.1f}x" for k, v in record.get("ratios", {}).items()]
    return out
