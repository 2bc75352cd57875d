"""``sparsecoded experiment NAME``: the package measured against its baselines.

Six experiments, each comparing coding schemes on the same workers, the same
matrix and the same injected stragglers:

``worker-time``
    Per-worker computation time of one ``A @ x`` per scheme, against density
    and n, k.  Every worker's coded block is built with the encoding kernel and
    its product timed *in this process, one worker at a time*
    (single-threaded kernel, median of ``--reps``), so that workers never
    compete for cores.
``encode-time``
    Time to build all n coded blocks per scheme, beside building dense-MDS
    blocks as dense arrays (how a dense code is usually implemented).
``completion``
    End-to-end round time against the number of stragglers 0..s and s + 1,
    under fixed-delay, shifted-exponential and crash models.
``stability``
    Worst-case condition number (``certify``) and the error of real decodes,
    per scheme, against n.
``iterative``
    Power iteration with the blocks placed once, per-iteration times, against
    scipy's iterates and eigenvalue.
``heterogeneous``
    Devices of capacity 1..3 (``design_mv(..., capacities=...)``), with the
    partial work of slow devices counted.

Modes.  ``"simulated"``: :class:`~sparsecoded.pools.inline.InlinePool`, the real
products computed one worker at a time, the round replayed on a clock built
from those measurements (injected delays are added on that clock, not slept).
``"live"``: real worker processes (:class:`~sparsecoded.LocalPool`, or a Dask
``LocalCluster`` with ``--dask``), real sleeps.  Every figure in the JSON file
says which mode produced it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import kernels
from .decode import Decoder
from .pools.base import compute
from .stragglers import Action, Crash, FixedDelay, ShiftedExponential, StragglerModel

__all__ = ["EXPERIMENTS", "run_experiment"]

MODE_SIMULATED = "simulated"
MODE_LIVE = "live"
_MODE_TEXT = {
    MODE_SIMULATED: "measured in this process one worker at a time (single-threaded kernel); "
    "round times replayed on a clock built from those measurements plus the injected delays",
    MODE_LIVE: "real worker processes computing concurrently, injected delays really slept",
}


# ----------------------------------------------------------------------------- context


def machine_info() -> dict[str, Any]:
    """Platform, CPU model, core counts and load: what the figures depend on."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": mem,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def versions() -> dict[str, Any]:
    import scipy

    import sparsecoded

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sparsecoded": sparsecoded.__version__,
        "kernels": (kernels.__doc__ or "").strip().splitlines()[0] if kernels.__doc__ else "",
        "openmp": bool(sparsecoded.openmp_available()),
    }
    for name in ("tqdm", "matplotlib", "distributed"):
        with contextlib.suppress(Exception):
            out[name] = __import__(name).__version__
    with contextlib.suppress(Exception):
        out["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    return out


def _progress(args: argparse.Namespace, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="step",
        disable=args.no_progress,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
    )


# ----------------------------------------------------------------------------- inputs


@dataclass
class MatrixInput:
    A: sp.csr_array
    meta: dict[str, Any]


def load_matrix(path: str | os.PathLike) -> sp.csr_array:
    """A Matrix Market file (.mtx or .mtx.gz) as float64 CSR."""
    import scipy.io

    M = scipy.io.mmread(str(path))
    A = sp.csr_array(M, dtype=np.float64)
    A.sum_duplicates()
    return A


def random_matrix(m: int, c: int, density: float, seed: int) -> sp.csr_array:
    """Uniformly random sparse matrix with standard-normal values (float64 CSR)."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"--density must be in (0, 1], got {density}")
    rng = np.random.default_rng(seed)
    A = sp.random_array(
        (m, c), density=density, format="csr", rng=rng, data_sampler=rng.standard_normal
    )
    return sp.csr_array(A)


def matrix_input(args: argparse.Namespace, density: float) -> MatrixInput:
    if args.matrix:
        A = load_matrix(args.matrix)
        meta = {
            "kind": "file",
            "file": str(args.matrix),
            "name": Path(args.matrix).name.split(".")[0],
        }
    else:
        m, c = args.size
        A = random_matrix(m, c, density, args.seed)
        meta = {
            "kind": "random",
            "seed": args.seed,
            "requested_density": density,
            "values": "standard normal",
            "pattern": "uniform (scipy.sparse.random_array)",
        }
    meta.update(
        {
            "shape": list(A.shape),
            "nnz": int(A.nnz),
            "density": A.nnz / max(1, A.shape[0] * A.shape[1]),
        }
    )
    return MatrixInput(A, meta)


def _ints(text: str) -> list[int]:
    return [int(t) for t in str(text).split(",") if t.strip()]


def _floats(text: str) -> list[float]:
    return [float(t) for t in str(text).split(",") if t.strip()]


def _schemes(
    args: argparse.Namespace, default: str, allowed: Sequence[str] | None = None
) -> list[str]:
    """The --schemes list; every name must be one the experiment knows."""
    from .design import MM_SCHEMES

    allowed = MM_SCHEMES if allowed is None else allowed
    names = [s.strip() for s in (args.schemes or default).split(",") if s.strip()]
    unknown = [s for s in names if s not in allowed]
    if unknown or not names:
        raise ValueError(
            f"--schemes must name some of {', '.join(allowed)}; got {args.schemes!r}"
            + (f" ({', '.join(unknown)} unknown here)" if unknown else "")
        )
    return names


def _sweep_points(densities: list[float], ns: list[int], ks: list[int]) -> list[tuple]:
    """Every (density, n, k) with 1 <= k <= n; none at all is an error."""
    points = [(d, n, k) for d in densities for n in ns for k in ks if 1 <= k <= n]
    if not points:
        raise ValueError(f"no valid (n, k) with k <= n among --workers {ns} and --k {ks}")
    return points


def _design(n: int, k: int, scheme: str, seed: int, **kw: Any):
    from . import design_mv

    return design_mv(n, k, scheme, seed=seed, **kw)


# ----------------------------------------------------------------------------- worker-time


def _block_rows(A: sp.csr_array, k: int) -> int:
    return -(-A.shape[0] // k)


def _timed(fn: Callable[[], Any], reps: int) -> tuple[list[float], list[float]]:
    """CPU seconds of this thread and wall seconds of ``reps`` calls of ``fn``, after a warm-up."""
    fn()  # warm caches and the first-call path
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall


def measure_workers(
    A: sp.csr_array,
    code: Any,
    x: np.ndarray,
    reps: int,
    tick: Callable[[], None] | None = None,
    clock: str = "cpu",
) -> dict[str, Any]:
    """Build each worker's coded block(s) and time its product, one worker at a time.

    Blocks are built one device at a time and dropped after timing, so even
    dense codes on large inputs need only one coded block in memory.  With
    ``clock="cpu"`` the figure is the CPU time of this thread (the kernel runs
    single-threaded in it), which time slicing on a busy machine does not
    inflate; ``"wall"`` is elapsed time.  Both are recorded.
    """
    E = sp.csr_array(code.encoding)
    owner = np.asarray(code.owner)
    weights = np.diff(E.indptr)
    n_dev = int(code.n_workers)
    times: list[float | None] = [None] * n_dev
    other: list[float | None] = [None] * n_dev
    nnz: list[int] = [0] * n_dev
    row_cpu: list[float | None] = [None] * E.shape[0]
    encode = 0.0
    for w in range(n_dev):
        rows = [int(r) for r in np.flatnonzero(owner == w) if weights[r] > 0]
        if rows:
            t0 = time.perf_counter()
            blocks = kernels.encode_row_blocks(A, E[rows])
            encode += time.perf_counter() - t0
            cpu, wall = _timed(lambda bs=blocks: [compute("matvec", b, x) for b in bs], reps)
            times[w] = statistics.median(cpu if clock == "cpu" else wall)
            other[w] = statistics.median(wall if clock == "cpu" else cpu)
            if len(rows) == 1:
                row_cpu[rows[0]] = statistics.median(cpu)
            else:  # a device of several blocks: each block's own time, for replays
                for r, b in zip(rows, blocks, strict=True):
                    row_cpu[r] = statistics.median(
                        _timed(lambda b=b: compute("matvec", b, x), reps)[0]
                    )
            nnz[w] = int(sum(b.nnz for b in blocks))
            del blocks
        if tick:
            tick()
    active = [t for t in times if t is not None]
    active_nnz = [z for z, t in zip(nnz, times, strict=True) if t is not None]
    return {
        "scheme": getattr(code, "scheme", "custom"),
        "weight": int(code.weight),
        "stragglers": int(code.stragglers),
        "workers_with_work": len(active),
        "worker_time_median": statistics.median(active),
        "worker_time_min": min(active),
        "worker_time_max": max(active),
        "worker_times": times,
        "clock": clock,
        "worker_times_other_clock": other,
        "worker_time_median_other_clock": statistics.median([t for t in other if t is not None]),
        "row_cpu_times": row_cpu,
        "worker_nnz": nnz,
        "nnz_median": statistics.median(active_nnz),
        "encode_seconds_sum": encode,
        "reps": reps,
        "mode": MODE_SIMULATED,
    }


def measure_workers_mm(
    A: sp.csr_array,
    B: sp.csr_array,
    code: Any,
    reps: int,
    tick: Callable[[], None] | None = None,
    clock: str = "cpu",
) -> dict[str, Any]:
    """Matrix-matrix version of :func:`measure_workers`: each worker's ``Ã_i @ B̃_i``."""
    Ea, Eb = sp.csr_array(code.encoding_a), sp.csr_array(code.encoding_b)
    wa, wb = np.diff(Ea.indptr), np.diff(Eb.indptr)
    Bt = sp.csr_array(B.T)
    n = Ea.shape[0]
    times: list[float | None] = [None] * n
    other: list[float | None] = [None] * n
    nnz: list[int] = [0] * n
    out_nnz: list[int] = [0] * n
    for i in range(n):
        if wa[i] and wb[i]:
            a = kernels.encode_row_blocks(A, Ea[[i]])[0]
            b = sp.csr_array(kernels.encode_row_blocks(Bt, Eb[[i]])[0].T)
            res = compute("matmat", (a, b), None)
            cpu, wall = _timed(lambda p=(a, b): compute("matmat", p, None), reps)
            times[i] = statistics.median(cpu if clock == "cpu" else wall)
            other[i] = statistics.median(wall if clock == "cpu" else cpu)
            nnz[i] = int(a.nnz + b.nnz)
            out_nnz[i] = int(res.nnz) if sp.issparse(res) else int(np.count_nonzero(res))
        if tick:
            tick()
    active = [t for t in times if t is not None]
    active_nnz = [z for z, t in zip(nnz, times, strict=True) if t is not None]
    return {
        "scheme": getattr(code, "scheme", "custom"),
        "weight": int(code.weight_a) * int(code.weight_b),
        "weight_a": int(code.weight_a),
        "weight_b": int(code.weight_b),
        "stragglers": int(code.stragglers),
        "workers_with_work": len(active),
        "worker_time_median": statistics.median(active),
        "worker_time_min": min(active),
        "worker_time_max": max(active),
        "worker_times": times,
        "clock": clock,
        "worker_times_other_clock": other,
        "worker_time_median_other_clock": statistics.median([t for t in other if t is not None]),
        "worker_nnz": nnz,
        "worker_output_nnz": out_nnz,
        "nnz_median": statistics.median(active_nnz),
        "reps": reps,
        "mode": MODE_SIMULATED,
    }


def _worker_time_point(A: sp.csr_array, n: int, k: int, schemes: Sequence[str], args, bar) -> dict:
    x = np.random.default_rng([args.seed, 1]).standard_normal(A.shape[1])
    out: dict[str, Any] = {}
    for scheme in schemes:
        bar.set_postfix_str(f"n={n} k={k} {scheme}")
        if args.ka:
            from . import design_mm

            code = design_mm(n, args.ka, args.kb, scheme, seed=args.seed)
            B = _mm_partner(A, args)
            out[scheme] = measure_workers_mm(
                A, B, code, args.reps, tick=lambda: bar.update(1), clock=args.clock
            )
            continue
        code = _design(n, k, scheme, args.seed)
        out[scheme] = measure_workers(
            A, code, x, args.reps, tick=lambda: bar.update(1), clock=args.clock
        )
    if "uncoded" in out:
        base_t, base_z = out["uncoded"]["worker_time_median"], out["uncoded"]["nnz_median"]
        for r in out.values():
            r["time_ratio_to_uncoded"] = r["worker_time_median"] / base_t
            r["nnz_ratio_to_uncoded"] = r["nnz_median"] / max(1, base_z)
    return out


def _mv_ratios(schemes: dict[str, Any], key: str, ours: str = "sparse") -> dict[str, float]:
    if ours not in schemes:
        return {}
    return {
        f"{name}/{ours}": schemes[name][key] / schemes[ours][key]
        for name in schemes
        if name != ours and schemes[ours][key] > 0
    }


def _mm_partner(A: sp.csr_array, args: argparse.Namespace) -> sp.csr_array:
    """B of ``A @ B``: A's transpose for a file, else random of A's transposed shape and density."""
    if args.matrix:
        return sp.csr_array(A.T)
    d = A.nnz / max(1, A.shape[0] * A.shape[1])
    return random_matrix(A.shape[1], A.shape[0], d, args.seed + 1)


def run_worker_time(args: argparse.Namespace) -> dict[str, Any]:
    densities = _floats(args.density) if not args.matrix else [float("nan")]
    ns, ks = _ints(args.workers or "20"), _ints(args.k or "16")
    if bool(args.ka) != bool(args.kb):
        raise ValueError("matrix-matrix needs both --ka and --kb")
    if args.ka:
        ks = [args.ka * args.kb]
    schemes = _schemes(args, "sparse,mds,polynomial,orthopoly,uncoded")
    points = _sweep_points(densities, ns, ks)
    sweep = []
    with _progress(args, sum(n for _, n, _ in points) * len(schemes), "worker-time") as bar:
        cache: dict[float, MatrixInput] = {}
        for d, n, k in points:
            if d not in cache:
                cache.clear()
                cache[d] = matrix_input(args, d)
            inp = cache[d]
            res = _worker_time_point(inp.A, n, k, schemes, args, bar)
            sweep.append(
                {
                    "density": inp.meta["density"],
                    "requested_density": None if math.isnan(d) else d,
                    "workers": n,
                    "k": k,
                    "input": inp.meta,
                    "schemes": res,
                    "ratios": _mv_ratios(res, "worker_time_median"),
                    "nnz_ratios": _mv_ratios(res, "nnz_median"),
                }
            )
    first = sweep[0]
    w_sparse = first["schemes"].get("sparse", {}).get("weight")
    target = 0.8 * first["k"] / w_sparse if w_sparse else None
    return {
        "operation": "matmat" if args.ka else "matvec",
        "mm_blocks": [args.ka, args.kb] if args.ka else None,
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


def plot_worker_time(result: dict[str, Any], path: str) -> None:
    plt = _pyplot()
    sweep = result["sweep"]
    multi = len(sweep) > 1
    fig, axes = plt.subplots(1, 2 if multi else 1, figsize=(10 if multi else 5.5, 4), squeeze=False)
    ax = axes[0][0]
    sch = result["schemes"]
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
        ax = axes[0][1]
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
    fig.suptitle("Per-worker compute (measured one worker at a time)", fontsize=11)
    _save(fig, path)


# ----------------------------------------------------------------------------- encode-time


def _dense_mds_build(A: sp.csr_array, E: sp.csr_array, rows: Sequence[int]) -> float:
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


def run_encode_time(args: argparse.Namespace) -> dict[str, Any]:
    densities = _floats(args.density) if not args.matrix else [float("nan")]
    ns, ks = _ints(args.workers or "20"), _ints(args.k or "16")
    schemes = _schemes(args, "sparse,mds,polynomial,orthopoly,uncoded")
    points = _sweep_points(densities, ns, ks)
    sweep = []
    with _progress(
        args, len(points) * (len(schemes) + (0 if args.no_dense else 1)), "encode-time"
    ) as bar:
        for d, n, k in points:
            inp = matrix_input(args, d)
            A = inp.A
            res: dict[str, Any] = {}
            for scheme in schemes:
                bar.set_postfix_str(f"n={n} k={k} {scheme}")
                code = _design(n, k, scheme, args.seed)
                E = sp.csr_array(code.encoding)
                samples, nnz = [], 0
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    blocks = kernels.encode_row_blocks(A, E, n_threads=args.threads)
                    samples.append(time.perf_counter() - t0)
                    nnz = int(sum(b.nnz for b in blocks))
                    del blocks
                res[scheme] = {
                    "weight": int(code.weight),
                    "encode_seconds": statistics.median(samples),
                    "encode_samples": samples,
                    "coded_nnz": nnz,
                    "nnz_ratio_to_A": nnz / max(1, A.nnz),
                    "mode": MODE_SIMULATED,
                }
                bar.update(1)
            if not args.no_dense:
                bar.set_postfix_str(f"n={n} k={k} dense arrays")
                code = _design(n, k, "mds", args.seed)
                b = _block_rows(A, k)
                bytes_needed = 8 * k * b * A.shape[1]
                if bytes_needed > args.dense_limit_mb * 2**20:
                    res["mds-dense-arrays"] = {
                        "skipped": f"needs {bytes_needed / 2**20:.0f} MiB of dense blocks, "
                        f"over --dense-limit-mb {args.dense_limit_mb}"
                    }
                else:
                    secs = _dense_mds_build(A, sp.csr_array(code.encoding), range(n))
                    res["mds-dense-arrays"] = {
                        "weight": k,
                        "encode_seconds": secs,
                        "mode": MODE_SIMULATED,
                        "how": "blocks densified, mixed with numpy (BLAS)",
                    }
                bar.update(1)
            ratios = _mv_ratios(
                {s: r for s, r in res.items() if "encode_seconds" in r}, "encode_seconds"
            )
            sweep.append(
                {
                    "density": inp.meta["density"],
                    "workers": n,
                    "k": k,
                    "input": inp.meta,
                    "schemes": res,
                    "ratios": ratios,
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
        "encode_threads": kernels.resolve_threads(args.threads),
        "dense_baseline_blas_threads": args.blas_threads,
    }


def plot_encode_time(result: dict[str, Any], path: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    sch = {s: r for s, r in result["schemes"].items() if "encode_seconds" in r}
    names = list(sch)
    ax.bar(range(len(names)), [sch[s]["encode_seconds"] * 1e3 for s in names], color="C0")
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("build all n coded blocks (ms, log)")
    p = result["sweep"][0]
    ax.set_title(f"Encoding, n={p['workers']}, k={p['k']}, density {p['density']:.2g}", fontsize=10)
    _save(fig, path)


# ----------------------------------------------------------------------------- pools


class _OnWorkers(StragglerModel):
    """Apply ``model`` to the given workers only; the others are on time."""

    def __init__(self, model: StragglerModel, workers: Sequence[int]):
        self.model = model
        self.workers = frozenset(int(w) for w in workers)

    def action(self, worker: int, round_index: int) -> Action:
        return self.model.action(worker, round_index) if worker in self.workers else Action()

    def __repr__(self) -> str:
        return f"{self.model!r} on workers {sorted(self.workers)}"


@contextlib.contextmanager
def open_pool(args: argparse.Namespace, n: int) -> Iterator[tuple[Any, str, str]]:
    """(pool, mode, backend name) for the flags: InlinePool, LocalPool or Dask."""
    if getattr(args, "dask", False):
        from distributed import Client, LocalCluster

        from . import DaskPool

        with (
            LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cl,
            Client(cl) as client,
        ):
            pool = DaskPool(client, timeout=args.timeout)
            try:
                yield pool, MODE_LIVE, "DaskPool(LocalCluster)"
            finally:
                pool.close()
    elif getattr(args, "live", False):
        from . import LocalPool

        with LocalPool(n, timeout=args.timeout) as pool:
            yield pool, MODE_LIVE, "LocalPool"
    else:
        from .pools.inline import InlinePool

        with InlinePool(n, timeout=args.timeout) as pool:
            yield pool, MODE_SIMULATED, "InlinePool"


def _settle(pool: Any, args: argparse.Namespace) -> None:
    """Let a Dask pool get back the workers a crash model killed, so the next run starts whole."""
    wait = getattr(pool, "wait_for_workers", None)
    if wait is not None:
        with contextlib.suppress(Exception):
            wait(timeout=args.timeout)


def _round(op: Any, x: np.ndarray, y_ref: np.ndarray) -> dict[str, Any]:
    """One call of a coded MV job; the failure of a round is recorded, not raised."""
    from .errors import NotEnoughWorkers

    t0 = time.perf_counter()
    try:
        y = op @ x
    except NotEnoughWorkers as exc:
        return {
            "ok": False,
            "error": str(exc),
            "error_type": type(exc).__name__,
            "wall_seconds": time.perf_counter() - t0,
        }
    wall = time.perf_counter() - t0
    rep = op.report
    err = float(np.linalg.norm(y - y_ref) / max(np.linalg.norm(y_ref), 1e-300))
    completion = rep.round_seconds + rep.decode_seconds
    return {
        "ok": True,
        "round_seconds": rep.round_seconds,
        "decode_seconds": rep.decode_seconds,
        "completion_seconds": completion,
        "wall_seconds": wall,
        "decode_share": rep.decode_seconds / completion if completion > 0 else 0.0,
        "rel_error": err,
        "answered": list(rep.answered),
        "cancelled": list(rep.cancelled),
        "dead": list(rep.dead),
        "condition": rep.condition,
        "decode_cached": rep.decode_cached,
        "compute_seconds": {str(k): v for k, v in rep.compute_seconds.items()},
        "mode": rep.mode,
        "round_index": rep.round_index,
    }


def _summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rounds if r["ok"]]
    out: dict[str, Any] = {"rounds_ok": len(ok), "rounds_failed": len(rounds) - len(ok)}
    if ok:
        for key in ("completion_seconds", "round_seconds", "decode_seconds", "decode_share"):
            out[key + "_median"] = statistics.median(r[key] for r in ok)
        out["rel_error_max"] = max(r["rel_error"] for r in ok)
    else:
        out["completion_seconds_median"] = None
        out["error"] = rounds[0]["error"] if rounds else None
    return out


# ----------------------------------------------------------------------------- completion


def _straggler_model(kind: str, workers: Sequence[int], args: argparse.Namespace) -> StragglerModel:
    if kind == "fixed":
        return FixedDelay(workers=workers, seconds=args.delay)
    if kind == "shiftexp":
        return _OnWorkers(
            ShiftedExponential(shift=args.delay, scale=args.delay / 2, seed=args.seed), workers
        )
    if kind == "crash":
        return Crash(workers=workers)
    raise ValueError(f"unknown straggler model {kind!r}, expected fixed, shiftexp or crash")


def _straggler_order(n: int, k: int, seed: int) -> list[int]:
    # stragglers are drawn from the first k workers first: every scheme (uncoded too) uses those
    rng = np.random.default_rng([seed, 2])
    first = rng.permutation(k).tolist()
    return first + rng.permutation(np.arange(k, n)).tolist()


def run_completion(args: argparse.Namespace) -> dict[str, Any]:
    from . import CodedMatVec

    n, k = _ints(args.workers or "8")[0], _ints(args.k or "6")[0]
    if not 1 <= k <= n:
        raise ValueError(f"--k must be between 1 and --workers = {n}, got {k}")
    s = n - k
    schemes = _schemes(args, "sparse,mds,uncoded")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    inp = matrix_input(args, _floats(args.density)[0] if not args.matrix else float("nan"))
    A = inp.A
    rng = np.random.default_rng([args.seed, 3])
    x = rng.standard_normal(A.shape[1])
    y_ref = A @ x
    order = _straggler_order(n, k, args.seed)
    counts = list(range(0, min(s + 1, n) + 1))
    results: dict[str, Any] = {}
    steps = len(schemes) * (1 + len(models) * (len(counts) - 1)) * args.rounds
    with open_pool(args, n) as (pool, mode, backend), _progress(args, steps, "completion") as bar:
        for scheme in schemes:
            code = _design(n, k, scheme, args.seed)
            per_model: dict[str, Any] = {}
            op = CodedMatVec(A, code, pool)
            encode_seconds = op.report.encode_seconds
            cpu_times = None
            if mode == MODE_SIMULATED:
                cpu_times = measure_workers(A, code, x, args.reps, clock="cpu")["row_cpu_times"]
                decoder = Decoder(code.encoding)
            for model_name in models:
                rows = []
                for j in counts:
                    if j == 0 and model_name != models[0]:
                        rows.append(dict(per_model[models[0]][0]))  # same no-straggler runs
                        continue
                    bar.set_postfix_str(f"{scheme} {model_name} {j}")
                    slow = order[:j]
                    model = _straggler_model(model_name, slow, args) if j else None
                    _settle(pool, args)
                    op.stragglers = model  # the blocks stay placed; only the injection changes
                    warm = [_round(op, x, y_ref) for _ in range(args.warmup)]
                    rounds = []
                    for _ in range(args.rounds):
                        rounds.append(_round(op, x, y_ref))
                        bar.update(1)
                    row = {
                        "stragglers": j,
                        "straggler_workers": slow,
                        "beyond_tolerance": j > s,
                        "model": repr(model) if model else "none",
                        **_summarise(rounds),
                        "rounds": rounds,
                        "warmup_rounds": warm,
                        "mode": mode,
                    }
                    if cpu_times is not None:
                        row.update(
                            _replay_cpu(cpu_times, code.owner, model, decoder, args.rounds, rounds)
                        )
                    rows.append(row)
                for key in ("completion_seconds_median", "cpu_replay_completion_seconds_median"):
                    base = rows[0].get(key)
                    for r in rows:
                        c = r.get(key)
                        name = "ratio_to_no_stragglers" + ("_cpu_replay" if "cpu" in key else "")
                        r[name] = c / base if (c is not None and base) else None
                per_model[model_name] = rows
            op.close()
            results[scheme] = {
                "weight": int(code.weight),
                "stragglers_tolerated": int(code.stragglers),
                "encode_seconds": encode_seconds,
                "models": per_model,
            }
    headline: dict[str, Any] = {}
    if "sparse" in results:
        for model_name, rows in results["sparse"]["models"].items():
            at_s = rows[min(s, len(rows) - 1)]
            headline[model_name] = {
                "ratio_at_s": at_s["ratio_to_no_stragglers"],
                "ratio_at_s_cpu_replay": at_s.get("ratio_to_no_stragglers_cpu_replay"),
                "decode_share_at_s": at_s.get("decode_share_median"),
                "decode_share_at_s_cpu_replay": at_s.get("cpu_replay_decode_share"),
            }
    return {
        "input": inp.meta,
        "workers": n,
        "k": k,
        "s": s,
        "counts": counts,
        "models": models,
        "delay_seconds": args.delay,
        "backend": backend,
        "mode": mode,
        "schemes": results,
        "targets": {
            "completion with s stragglers <= 1.2 x no-straggler (sparse)": headline,
            "decode share of a round <= 0.05": headline,
        },
    }


def _replay_cpu(
    row_times: Sequence[float | None],
    owner: Sequence[int],
    model: StragglerModel | None,
    decoder: Any,
    n_rounds: int,
    rounds: list[dict[str, Any]],
) -> dict[str, Any]:
    """Completion from per-block CPU times: the round replayed without the machine's noise.

    Device ``d`` sleeps its injected delay, then computes its blocks one after
    another in row order (each taking its CPU time measured alone) and sends
    each when done, as the pools do; results are taken in that order until the
    decoder accepts them, as the job does.  The decode time of the real rounds
    is added.
    """
    times = []
    # the same round indices as the real rounds, so random models draw the same delays
    indices = [q["round_index"] for q in rounds if q.get("round_index") is not None]
    for r in indices if len(indices) == n_rounds else range(n_rounds):
        events = []
        clock: dict[int, float] = {}
        for row, t in enumerate(row_times):
            d = int(owner[row])
            act = model.action(d, r) if model is not None else Action()
            if t is not None and not act.crash:
                clock[d] = clock.get(d, act.delay) + t
                events.append((clock[d], row))
        events.sort()
        got: list[int] = []
        done = None
        for at, row in events:
            got.append(row)
            if len(got) >= decoder.k:
                plan = decoder.plan(got)
                if decoder.acceptable(plan) or (plan is not None and len(got) == len(events)):
                    done = at
                    break
        times.append(done)
    ok = [t for t in times if t is not None]
    decode = [q["decode_seconds"] for q in rounds if q["ok"]]
    dec = statistics.median(decode) if decode else 0.0
    return {
        "cpu_replay_round_seconds": times,
        "cpu_replay_completion_seconds_median": statistics.median(ok) + dec if ok else None,
        "cpu_replay_decode_share": dec / (statistics.median(ok) + dec) if ok else None,
    }


def _plot_rounds_and_replay(ax: Any, result: dict[str, Any], model_name: str, label) -> None:
    """One scheme a colour: measured completion (solid) and its CPU replay (dashed)."""
    for i, (scheme, r) in enumerate(result["schemes"].items()):
        rows = r["models"][model_name]
        measured = [q for q in rows if q.get("completion_seconds_median") is not None]
        ax.plot(
            [q["stragglers"] for q in measured],
            [q["completion_seconds_median"] * 1e3 for q in measured],
            "o-",
            color=f"C{i}",
            label=label(scheme, r),
        )
        replay = [q for q in rows if q.get("cpu_replay_completion_seconds_median") is not None]
        if replay:
            ax.plot(
                [q["stragglers"] for q in replay],
                [q["cpu_replay_completion_seconds_median"] * 1e3 for q in replay],
                "s--",
                color=f"C{i}",
                alpha=0.6,
                ms=4,
                label=f"{scheme}, CPU replay",
            )


def plot_completion(result: dict[str, Any], path: str) -> None:
    plt = _pyplot()
    models = result["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, model_name in zip(axes[0], models, strict=True):
        _plot_rounds_and_replay(
            ax, result, model_name, lambda scheme, r: f"{scheme} (w={r['weight']}), rounds"
        )
        for i, r in enumerate(result["schemes"].values()):
            rows = r["models"][model_name]
            fails = [q["stragglers"] for q in rows if q.get("completion_seconds_median") is None]
            for f in fails:
                ax.axvline(f, color=f"C{i}", ls=":", lw=1)
                ax.annotate(
                    "fails",
                    (f, 0),
                    xytext=(2, 4 + 10 * i),
                    textcoords="offset points",
                    color=f"C{i}",
                    fontsize=7,
                )
        ax.axvline(result["s"] + 0.5, color="gray", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("stragglers")
        ax.set_title(model_name, fontsize=10)
        ax.set_ylabel("completion time (ms, log)")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Completion, n={result['workers']}, k={result['k']} (s={result['s']}), "
        f"mode {result['mode']}",
        fontsize=11,
    )
    _save(fig, path)


# ----------------------------------------------------------------------------- stability


def run_stability(args: argparse.Namespace) -> dict[str, Any]:
    from . import CodedMatVec, certify
    from .pools.inline import InlinePool

    ns = _ints(args.workers or "8,12,16,20,24")
    s = args.stragglers if args.stragglers is not None else 4
    schemes = _schemes(args, "sparse,mds,polynomial,orthopoly")
    if all(n - s < 1 for n in ns):
        raise ValueError(f"--stragglers {s} leaves no k = n - s >= 1 for --workers {ns}")
    m, c = args.size if args.size else (2000, 400)
    rows_out: list[dict[str, Any]] = []
    rng = np.random.default_rng([args.seed, 4])
    with _progress(args, len(ns) * len(schemes), "stability") as bar:
        for n in ns:
            k = n - s
            if k < 1:
                continue
            A = random_matrix(max(m, k), c, _floats(args.density)[0], args.seed + n)
            x = rng.standard_normal(c)
            y_ref = A @ x
            for scheme in schemes:
                bar.set_postfix_str(f"n={n} {scheme}")
                code = _design(n, k, scheme, args.seed)
                t0 = time.perf_counter()
                cert = certify(code, max_subsets=args.max_subsets, seed=args.seed)
                cert_s = time.perf_counter() - t0
                errs, conds = [], []
                with InlinePool(n) as pool:
                    for t in range(args.trials):
                        dead = np.random.default_rng([args.seed, n, t]).choice(n, s, replace=False)
                        # huge max_condition: measure the error of the system actually solved
                        with CodedMatVec(
                            A,
                            code,
                            pool,
                            stragglers=Crash(workers=dead.tolist()),
                            max_condition=np.inf,
                        ) as op:
                            y = op @ x
                            errs.append(float(np.linalg.norm(y - y_ref) / np.linalg.norm(y_ref)))
                            conds.append(float(op.report.condition))
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
                        "trials": args.trials,
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
        "density": _floats(args.density)[0],
        "schemes": by_scheme,
        "rows": rows_out,
        "mode": MODE_SIMULATED,
    }


def plot_stability(result: dict[str, Any], path: str) -> None:
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (scheme, rows) in enumerate(result["schemes"].items()):
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
    fig.suptitle(f"Numerical stability, s = {result['stragglers']} stragglers", fontsize=11)
    _save(fig, path)


# ----------------------------------------------------------------------------- iterative


def run_iterative(args: argparse.Namespace) -> dict[str, Any]:
    import scipy.sparse.linalg as spla

    from . import CodedMatVec

    n, k = _ints(args.workers or "8")[0], _ints(args.k or "6")[0]
    schemes = _schemes(args, "sparse,mds,uncoded")
    inp = matrix_input(args, _floats(args.density)[0] if not args.matrix else float("nan"))
    A = inp.A
    square = A.shape[0] == A.shape[1]
    rng = np.random.default_rng([args.seed, 5])
    x0 = rng.standard_normal(A.shape[1])
    x0 /= np.linalg.norm(x0)
    # the iteration: power iteration on A (square) or on A^T A (rectangular)
    At = sp.csr_array(A.T)

    def step_ref(v: np.ndarray) -> np.ndarray:
        return A @ v if square else At @ (A @ v)

    t0 = time.perf_counter()
    xs_ref, lam_ref_iter, v = [], [], x0.copy()
    for _ in range(args.iters):
        u = step_ref(v)
        lam_ref_iter.append(float(v @ u))
        v = u / np.linalg.norm(u)
        xs_ref.append(v)
    scipy_iter_seconds = (time.perf_counter() - t0) / args.iters
    if square:
        try:
            if (A - A.T).count_nonzero() == 0:
                lam_true = float(spla.eigsh(A, k=1, which="LM", return_eigenvectors=False)[0])
            else:
                lam_true = float(
                    np.abs(spla.eigs(A, k=1, which="LM", return_eigenvectors=False)[0])
                )
        except Exception:  # noqa: BLE001 - ARPACK may not converge; the comparison then uses the iterates only
            lam_true = None
    else:
        lam_true = float(spla.svds(A, k=1, return_singular_vectors=False)[0] ** 2)
    slow = _straggler_order(n, k, args.seed)[: args.stragglers or 0]
    model = _straggler_model(args.models.split(",")[0], slow, args) if slow else None
    results: dict[str, Any] = {}
    with (
        open_pool(args, n) as (pool, mode, backend),
        _progress(args, len(schemes) * args.iters, "iterative") as bar,
    ):
        for scheme in schemes:
            code = _design(n, k, scheme, args.seed)
            bar.set_postfix_str(scheme)
            ops = [CodedMatVec(A, code, pool, stragglers=model)]
            if not square:
                ops.append(CodedMatVec(At, code, pool, stragglers=model))
            per_iter, diffs, lams, cached, failed = [], [], [], 0, None
            v = x0.copy()
            try:
                for it in range(args.iters):
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
            finally:
                encode = sum(
                    op.report.encode_seconds + op.report.place_seconds for op in ops if op.report
                )
                for op in ops:
                    op.close()
            t_iter = [p["completion_seconds"] for p in per_iter]
            results[scheme] = {
                "weight": int(code.weight),
                "iterations": len(per_iter),
                "failed": failed,
                "setup_seconds": encode,
                "iteration_seconds_median": statistics.median(t_iter) if t_iter else None,
                "per_iteration": per_iter,
                "eigenvalue_estimates": lams,
                "max_iterate_difference_to_scipy": max(diffs) if diffs else None,
                "final_eigenvalue": lams[-1] if lams else None,
                "eigenvalue_rel_error_to_scipy_iteration": abs(lams[-1] - lam_ref_iter[-1])
                / abs(lam_ref_iter[-1])
                if lams
                else None,
                "decode_cache_hits": cached,
                "rounds": len(per_iter) * len(ops),
                "mode": mode,
            }
    return {
        "input": inp.meta,
        "workers": n,
        "k": k,
        "iteration": "power iteration on " + ("A" if square else "A^T A"),
        "iters": args.iters,
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


def plot_iterative(result: dict[str, Any], path: str) -> None:
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    ref = result["reference_eigenvalue"] or result["scipy_eigenvalue_estimates"][-1]
    it = np.arange(1, len(result["scipy_eigenvalue_estimates"]) + 1)
    a1.semilogy(
        it,
        np.abs(np.array(result["scipy_eigenvalue_estimates"]) - ref) / abs(ref) + 1e-17,
        "k-",
        lw=3,
        alpha=0.4,
        label="scipy A @ x",
    )
    for i, (scheme, r) in enumerate(result["schemes"].items()):
        lams = np.array(r["eigenvalue_estimates"])
        if len(lams):
            a1.semilogy(
                np.arange(1, len(lams) + 1),
                np.abs(lams - ref) / abs(ref) + 1e-17,
                "--",
                color=f"C{i}",
                label=scheme,
            )
            a2.plot(
                np.arange(1, len(lams) + 1),
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
    a2.set_ylabel(f"iteration time (ms, {result['mode']}, log)")
    a2.legend(fontsize=8)
    fig.suptitle(
        f"Power iteration on {result['input'].get('name', 'random')} "
        f"{tuple(result['input']['shape'])}",
        fontsize=11,
    )
    _save(fig, path)


# ----------------------------------------------------------------------------- heterogeneous


@dataclass
class _RowCode:
    """A code given by its rows and their owners (baselines on heterogeneous devices)."""

    encoding: sp.csr_array
    owner: np.ndarray
    n_workers: int
    k: int
    weight: int
    stragglers: int
    scheme: str


def run_heterogeneous(args: argparse.Namespace) -> dict[str, Any]:
    from . import CodedMatVec

    n = _ints(args.workers or "6")[0]
    caps = _ints(args.capacities) if args.capacities else [1 + (i % 3) for i in range(n)]
    if len(caps) != n:
        raise ValueError(
            f"--capacities has {len(caps)} entries, expected one per worker (--workers {n})"
        )
    total = sum(caps)
    k = (
        _ints(args.k)[0]
        if args.k
        else total - max(caps) * (args.stragglers if args.stragglers is not None else 1)
    )
    sparse_code = _design(n, k, "sparse", args.seed, capacities=caps)
    owner = np.asarray(sparse_code.owner)
    N = sparse_code.encoding.shape[0]
    rng = np.random.default_rng([args.seed, 6])
    codes: dict[str, Any] = {"sparse": sparse_code}
    schemes = _schemes(args, "sparse,mds,uncoded", allowed=("sparse", "mds", "uncoded"))
    if "mds" in schemes:
        codes["mds"] = _RowCode(
            sp.csr_array(rng.standard_normal((N, k))),
            owner,
            n,
            k,
            k,
            int(sparse_code.stragglers),
            "mds",
        )
    if "uncoded" in schemes:
        # each device stores its share of the k blocks, no redundancy
        E = sp.csr_array(
            (np.ones(min(N, k)), (np.arange(min(N, k)), np.arange(min(N, k)))), shape=(N, k)
        )
        codes["uncoded"] = _RowCode(E, owner, n, k, 1, 0, "uncoded")
    codes = {s: c for s, c in codes.items() if s in schemes}
    inp = matrix_input(args, _floats(args.density)[0] if not args.matrix else float("nan"))
    A = inp.A
    x = rng.standard_normal(A.shape[1])
    y_ref = A @ x
    s_dev = int(sparse_code.stragglers)
    # the worst case for every scheme: the largest devices straggle first (ties in seeded order)
    tie = np.random.default_rng([args.seed, 7]).permutation(n)
    order = sorted(range(n), key=lambda d: (-caps[d], tie[d]))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    counts = list(range(0, s_dev + 2))
    results: dict[str, Any] = {}
    steps = len(codes) * len(models) * len(counts) * args.rounds
    with (
        open_pool(args, n) as (pool, mode, backend),
        _progress(args, steps, "heterogeneous") as bar,
    ):
        for scheme, code in codes.items():
            per_model: dict[str, Any] = {}
            op = CodedMatVec(A, code, pool)
            encode_seconds = op.report.encode_seconds
            row_cpu = None
            if mode == MODE_SIMULATED:
                row_cpu = measure_workers(A, code, x, args.reps, clock="cpu")["row_cpu_times"]
                decoder = Decoder(code.encoding)
            for model_name in models:
                rows = []
                for j in counts:
                    if j == 0 and model_name != models[0]:
                        rows.append(dict(per_model[models[0]][0]))  # same no-straggler runs
                        bar.update(args.rounds)
                        continue
                    slow = sorted(order[:j])
                    model = _straggler_model(model_name, slow, args) if j else None
                    _settle(pool, args)
                    op.stragglers = model  # the blocks stay placed; only the injection changes
                    for _ in range(args.warmup):
                        _round(op, x, y_ref)
                    rounds = []
                    for _ in range(args.rounds):
                        r = _round(op, x, y_ref)
                        if r["ok"]:
                            r.update(_partial_work(op, owner, code.encoding))
                        rounds.append(r)
                        bar.update(1)
                    summary = _summarise(rounds)
                    ok = [r for r in rounds if r["ok"]]
                    summary["results_from_partial_devices"] = max(
                        (r["results_from_partial_devices"] for r in ok), default=0
                    )
                    if row_cpu is not None:
                        summary.update(
                            _replay_cpu(row_cpu, owner, model, decoder, args.rounds, rounds)
                        )
                    rows.append(
                        {
                            "stragglers": j,
                            "straggler_devices": slow,
                            "beyond_tolerance": j > s_dev,
                            "model": repr(model) if model else "none",
                            **summary,
                            "rounds": rounds,
                            "mode": mode,
                        }
                    )
                per_model[model_name] = rows
            op.close()
            results[scheme] = {
                "weight": int(code.weight),
                "stragglers_tolerated": int(code.stragglers),
                "encode_seconds": encode_seconds,
                "coded_blocks": int(code.encoding.shape[0]),
                "models": per_model,
            }
    return {
        "input": inp.meta,
        "workers": n,
        "capacities": caps,
        "k": k,
        "s_devices": s_dev,
        "virtual_workers": N,
        "owner": owner.tolist(),
        "models": models,
        "counts": counts,
        "backend": backend,
        "mode": mode,
        "schemes": results,
    }


def _partial_work(op: Any, owner: np.ndarray, encoding: Any) -> dict[str, Any]:
    """Which decoded results came from devices that had not finished all their blocks."""
    weights = np.diff(sp.csr_array(encoding).indptr)
    blocks = np.bincount(owner[weights > 0], minlength=int(owner.max()) + 1)
    used = [int(r) for r in op.report.rows_used]
    per_dev: dict[int, int] = {}
    for r in used:
        per_dev[int(owner[r])] = per_dev.get(int(owner[r]), 0) + 1
    partial = {d: c for d, c in per_dev.items() if c < blocks[d]}
    return {
        "results_used_per_device": {str(d): c for d, c in sorted(per_dev.items())},
        "partial_devices": sorted(partial),
        "results_from_partial_devices": int(sum(partial.values())),
    }


def plot_heterogeneous(result: dict[str, Any], path: str) -> None:
    plt = _pyplot()
    models = result["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, model_name in zip(axes[0], models, strict=True):
        _plot_rounds_and_replay(ax, result, model_name, lambda scheme, r: f"{scheme}, rounds")
        ax.axvline(result["s_devices"] + 0.5, color="gray", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("straggling devices")
        ax.set_ylabel("completion (ms, log)")
        ax.set_title(model_name, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Heterogeneous devices, capacities {result['capacities']}, k={result['k']}", fontsize=10
    )
    _save(fig, path)


# ----------------------------------------------------------------------------- driver


@contextlib.contextmanager
def _blas_limit(n_threads: int) -> Iterator[dict[str, Any]]:
    """Limit BLAS threads for the run, and say how (env at numpy's start, or threadpoolctl)."""
    info: dict[str, Any] = {
        "requested": n_threads,
        "env": {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
    }
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        info["threadpoolctl"] = False
        yield info
        return
    info["threadpoolctl"] = True
    with threadpool_limits(limits=n_threads, user_api="blas"):
        yield info


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise ValueError(
            "--plot needs matplotlib, which is not installed: pip install 'sparsecoded[plot]'"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


EXPERIMENTS: dict[str, tuple[Callable[[argparse.Namespace], dict], Callable[[dict, str], None]]] = {
    "worker-time": (run_worker_time, plot_worker_time),
    "encode-time": (run_encode_time, plot_encode_time),
    "completion": (run_completion, plot_completion),
    "stability": (run_stability, plot_stability),
    "iterative": (run_iterative, plot_iterative),
    "heterogeneous": (run_heterogeneous, plot_heterogeneous),
}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def run_experiment(args: argparse.Namespace) -> dict[str, Any]:
    """Run the experiment ``args.name``; write ``args.json`` / ``args.plot``; return the record.

    ``args`` is what ``sparsecoded experiment`` parses (see :mod:`sparsecoded.cli`).

    Examples
    --------
    >>> from sparsecoded.cli import build_parser
    >>> args = build_parser().parse_args(
    ...     ["experiment", "worker-time", "--size", "200", "100", "--workers", "4", "--k", "3",
    ...      "--schemes", "sparse,uncoded", "--reps", "1", "--no-progress"])
    >>> record = run_experiment(args)
    >>> record["schemes"]["sparse"]["weight"], record["schemes"]["sparse"]["mode"]
    (2, 'simulated')
    """
    if getattr(args, "size", None) is None:
        args.size = (2000, 400) if args.name == "stability" else (32000, 20000)
    if args.name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {args.name!r}, expected one of {sorted(EXPERIMENTS)}")
    if args.plot:
        _pyplot()  # fail before the work, not after
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path:  # an unwritable place fails now, not after the run
            out = Path(path)
            if out.is_dir():
                raise ValueError(f"{flag} {path} is a directory, expected a file name")
            out.parent.mkdir(parents=True, exist_ok=True)
    if args.live and args.dask:
        raise ValueError("--live and --dask are exclusive")
    run, plot = EXPERIMENTS[args.name]
    started = time.time()
    machine = machine_info()
    with _blas_limit(args.blas_threads) as blas:
        body = run(args)
    machine["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    params = {k: v for k, v in vars(args).items() if k not in ("func",) and not callable(v)}
    record = {
        "experiment": args.name,
        "command": "sparsecoded " + " ".join(getattr(args, "argv", []) or []),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_seconds": time.time() - started,
        "machine": machine,
        "versions": versions(),
        "parameters": params,
        "seeds": {"matrix": args.seed, "code": args.seed, "operand_and_stragglers": args.seed},
        "modes": _MODE_TEXT,
        "blas_threads": blas,
        **body,
    }
    record = _jsonable(record)
    if args.json:  # its folder was made before the run
        Path(args.json).write_text(json.dumps(record, indent=1))
    if args.plot:
        plot(record, args.plot)
    return record


def summary_lines(record: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    name = record["experiment"]
    out = [f"{name}: mode {record.get('mode')}, {record['elapsed_seconds']:.1f} s"]
    sch = record.get("schemes", {})
    if name == "worker-time":
        for s, r in sch.items():
            out.append(
                f"  {s:<11} w={r['weight']:<3} "
                f"worker median {r['worker_time_median'] * 1e3:8.3f} ms"
                f"  nnz median {r['nnz_median']:>10.0f}"
            )
        out += [f"  {k}: {v:.2f}x" for k, v in record.get("ratios", {}).items()]
    elif name == "encode-time":
        for s, r in sch.items():
            if "encode_seconds" in r:
                out.append(f"  {s:<17} encode {r['encode_seconds'] * 1e3:9.2f} ms")
        out += [f"  {k}: {v:.1f}x" for k, v in record.get("ratios", {}).items()]
    elif name in ("completion", "heterogeneous"):
        for s, r in sch.items():
            for m, rows in r["models"].items():
                cells = [
                    "fail"
                    if q.get("completion_seconds_median") is None
                    else f"{q['completion_seconds_median'] * 1e3:.1f}"
                    + (
                        f"({q['cpu_replay_completion_seconds_median'] * 1e3:.1f})"
                        if q.get("cpu_replay_completion_seconds_median") is not None
                        else ""
                    )
                    for q in rows
                ]
                out.append(f"  {s:<8} {m:<9} ms by stragglers 0..: " + " ".join(cells))
    elif name == "stability":
        for s, rows in sch.items():
            out.append(
                f"  {s:<10} worst cond by n: "
                + " ".join(f"{r['workers']}:{r['worst_condition']:.1e}" for r in rows)
            )
    elif name == "iterative":
        for s, r in sch.items():
            t = r["iteration_seconds_median"]
            out.append(
                f"  {s:<8} {r['iterations']} iterations, "
                f"median {t * 1e3 if t else float('nan'):.2f} ms, "
                f"max iterate diff to scipy {r['max_iterate_difference_to_scipy']}"
            )
    return out
