"""The completion and heterogeneous experiments, live on an emulated edge cluster.

Stragglers here are devices, not sleeps: every host is an
:class:`~sparsecoded.emulate.EdgeCluster` network namespace with its own sshd
and a cpu cgroup, the Dask workers run inside it over SSH, and a straggler is
a host whose quota is lowered to ``slow_cpu`` of a core for the rounds of that
setting (``EdgeCluster.set_cpu``).  Its computation, its Dask event loop and
its (de)serialisation all run at that speed.

``kind="completion"``: the round time against the number of slow devices
0..s and s + 1, for each scheme on the same hosts and matrix (uncoded with
k = n blocks, one per device; the others with the given k).  Within one
straggler setting the schemes take turns round by round, so a change of the
machine's load hits them alike.

``kind="heterogeneous"``: devices of capacities ``capacities`` get quotas in
the same proportion (``capacity x cpu_unit``); the sparse code stores
``capacities[d]`` coded blocks on device ``d``; the largest devices slow down
first.

The work of a round is ``A @ X`` with ``X`` of ``columns`` columns (a batch of
right-hand sides): one column of a matrix from ``/work/shared/data`` costs a
device well under the cgroup's 1 ms time slice, which a quota cannot slow.

Honest baselines on few cores.  The hosts share this machine's cores with
each other and with the master.  When their quotas add up to more than the
cores, the no-straggler rounds are slowed by contention and a throttled
device *frees* CPU for the others, which flatters every coded scheme.  The
default ``cpu`` therefore gives each normal host ``0.9 x usable cores / n``
of a core (0.3 for 6 hosts on 2 cores); ``cpu=1.0`` reproduces the
contended setting.  The record keeps both the setting and the cores.

Interface (for the experiments package): :func:`add_arguments`, :func:`run`
(plain keyword parameters, returns the JSON record), :func:`plot`,
:func:`summary`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import scipy.sparse as sp

__all__ = ["add_arguments", "plot", "run", "summary"]

DEFAULT_MATRIX = "/work/shared/data/bcsstk16.mtx.gz"
COMPLETION_SCHEMES = ("uncoded", "replication", "mds", "polynomial", "sparse")
HETEROGENEOUS_SCHEMES = ("uncoded", "mds", "sparse")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The edge-only flags (``--emulate N --slow-cpu F --cpu --link-mbit --columns``).

    The experiment's shared flags are reused as they are: ``--matrix``,
    ``--seed``, ``--k``, ``--schemes``, ``--capacities``, ``--rounds``,
    ``--warmup``, ``--timeout``, ``--json``, ``--plot``.
    """
    g = parser.add_argument_group("emulated edge cluster (root, Linux)")
    g.add_argument(
        "--emulate",
        type=int,
        default=None,
        metavar="N",
        help="run live on N emulated hosts (network namespaces, sshd, cpu cgroups)",
    )
    g.add_argument(
        "--slow-cpu",
        type=float,
        default=0.1,
        metavar="F",
        help="--emulate: a slow device's quota, fraction of a core (default 0.1)",
    )
    g.add_argument(
        "--cpu",
        type=float,
        default=None,
        metavar="F",
        help="--emulate: normal hosts' quota (default 0.9 x usable cores / N, no contention; "
        "heterogeneous: the largest device's)",
    )
    g.add_argument("--link-mbit", type=float, default=None, help="--emulate: rate limit per link")
    g.add_argument(
        "--columns", type=int, default=32, help="--emulate: columns of X in A @ X (default 32)"
    )


def _read_matrix(path: str) -> sp.csr_array:
    import numpy as np
    import scipy.io
    import scipy.sparse as sp

    A = sp.csr_array(scipy.io.mmread(str(path)), dtype=np.float64)
    A.sum_duplicates()
    return A


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class _RowCode:
    """A code given by its rows and their owners (baselines on heterogeneous devices)."""

    encoding: Any  # scipy.sparse.csr_array
    owner: Any  # numpy.ndarray
    n_workers: int
    k: int
    weight: int
    stragglers: int
    scheme: str


def _block_cpu_seconds(A: sp.csr_array, code: Any, X: np.ndarray, reps: int = 3) -> list[float]:
    """Each device's product, CPU time in this process, one device at a time (median of reps)."""
    import numpy as np
    import scipy.sparse as sp

    from . import kernels

    E = sp.csr_array(code.encoding)
    owner = np.asarray(code.owner)
    weights = np.diff(E.indptr)
    out = []
    for d in range(int(code.n_workers)):
        rows = [int(r) for r in np.flatnonzero(owner == d) if weights[r] > 0]
        if not rows:
            continue
        blocks = kernels.encode_row_blocks(A, E[rows])
        for b in blocks:
            kernels.matvec(b, X, n_threads=1)
        times = []
        for _ in range(reps):
            t0 = time.thread_time()
            for b in blocks:
                kernels.matvec(b, X, n_threads=1)
            times.append(time.thread_time() - t0)
        out.append(statistics.median(times))
    return out


def _one_round(op: Any, X: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    import numpy as np

    from . import NotEnoughWorkers

    t0 = time.perf_counter()
    try:
        Y = op @ X
    except NotEnoughWorkers as exc:
        return {"ok": False, "error": str(exc), "wall_seconds": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    rep = op.report
    return {
        "ok": True,
        "wall_seconds": wall,
        "round_seconds": rep.round_seconds,
        "decode_seconds": rep.decode_seconds,
        "completion_seconds": rep.round_seconds + rep.decode_seconds,
        "rel_error": float(np.linalg.norm(Y - ref) / max(np.linalg.norm(ref), 1e-300)),
        "answered": list(rep.answered),
        "cancelled": list(rep.cancelled),
        "compute_seconds": {str(k): v for k, v in rep.compute_seconds.items()},
        "rows_used": list(rep.rows_used),
    }


def _stats(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    ok = [r["completion_seconds"] for r in rounds if r["ok"]]
    out: dict[str, Any] = {"rounds_ok": len(ok), "rounds_failed": len(rounds) - len(ok)}
    if ok:
        q = np.percentile(ok, [25, 75])
        out.update(
            completion_seconds_median=statistics.median(ok),
            completion_seconds_min=min(ok),
            completion_seconds_max=max(ok),
            completion_seconds_iqr=[float(q[0]), float(q[1])],
            rel_error_max=max(r["rel_error"] for r in rounds if r["ok"]),
        )
        comp = [v for r in rounds if r["ok"] for v in r["compute_seconds"].values()]
        out["worker_compute_seconds_median"] = statistics.median(comp) if comp else None
    else:
        out["completion_seconds_median"] = None
        out["error"] = rounds[0].get("error") if rounds else None
    return out


def _quiet_dask() -> None:
    # Dask logs every worker start and stop at INFO; the record says what matters.
    # Its import sets its loggers' levels: import it first.
    import distributed  # noqa: F401

    for name in ("distributed", "distributed.deploy.ssh", "asyncssh"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "load_average_at_start": list(os.getloadavg()),
    }


def run(
    *,
    kind: str = "completion",
    hosts: int = 6,
    k: int | None = None,
    slow_cpu: float = 0.1,
    cpu: float | None = None,
    link_mbit: float | None = None,
    matrix: str = DEFAULT_MATRIX,
    columns: int = 32,
    schemes: str | list[str] | None = None,
    capacities: str | list[int] | None = None,
    rounds: int = 7,
    warmup: int = 2,
    seed: int = 0,
    timeout: float = 120.0,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the experiment on a fresh :class:`~sparsecoded.emulate.EdgeCluster`; the record."""
    import numpy as np
    import scipy.sparse as sp

    from . import CodedMatVec, design_mv
    from .emulate import EdgeCluster

    if kind not in ("completion", "heterogeneous"):
        raise ValueError(f"kind must be completion or heterogeneous, got {kind!r}")
    if not 1 <= rounds or warmup < 0 or columns < 1:
        raise ValueError("rounds and columns must be >= 1, warmup >= 0")
    n = int(hosts)
    started = time.time()
    machine = _machine()
    cores = machine["usable_cores"]
    auto_cpu = cpu is None
    A = _read_matrix(matrix)
    rng = np.random.default_rng([seed, 11])
    X = (
        rng.standard_normal((A.shape[1], columns))
        if columns > 1
        else rng.standard_normal(A.shape[1])
    )
    ref = A @ X
    allowed = COMPLETION_SCHEMES if kind == "completion" else HETEROGENEOUS_SCHEMES
    if schemes is None:
        names = list(allowed)
    else:
        names = [s.strip() for s in (schemes.split(",") if isinstance(schemes, str) else schemes)]
    bad = [s for s in names if s not in allowed]
    if bad or not names:
        raise ValueError(f"schemes must be some of {', '.join(allowed)}; got {names}")

    codes: dict[str, Any] = {}
    if kind == "completion":
        k = n - 2 if k is None else int(k)
        if not 1 <= k <= n:
            raise ValueError(f"k must be between 1 and {n}, got {k}")
        s = n - k
        base_cpu = [min(1.0, 0.9 * cores / n) if auto_cpu else float(cpu)] * n
        for name in names:
            codes[name] = design_mv(n, n if name == "uncoded" else k, name, seed=seed)
        order = np.random.default_rng([seed, 12]).permutation(n).tolist()
        counts = list(range(0, min(s + 1, n) + 1))
        caps = None
    else:
        caps_l = (
            [int(c) for c in capacities.split(",")]
            if isinstance(capacities, str)
            else list(capacities)
            if capacities is not None
            else [1 + (i % 3) for i in range(n)]
        )
        if len(caps_l) != n:
            raise ValueError(f"capacities has {len(caps_l)} entries, expected {n}")
        caps = caps_l
        total = sum(caps)
        unit = (0.9 * cores / total) if auto_cpu else float(cpu) / max(caps)
        base_cpu = [c * unit for c in caps]
        k = total - max(caps) if k is None else int(k)
        sparse_code = design_mv(n, k, "sparse", seed=seed, capacities=caps)
        owner = np.asarray(sparse_code.owner)
        N = sparse_code.encoding.shape[0]
        s = int(sparse_code.stragglers)
        crng = np.random.default_rng([seed, 13])
        for name in names:
            if name == "sparse":
                codes[name] = sparse_code
            elif name == "mds":
                codes[name] = _RowCode(
                    sp.csr_array(crng.standard_normal((N, k))), owner, n, k, k, s, "mds"
                )
            else:  # uncoded: the k blocks on the first k coded slots, no redundancy
                m = min(N, k)
                E = sp.csr_array((np.ones(m), (np.arange(m), np.arange(m))), shape=(N, k))
                codes[name] = _RowCode(E, owner, n, k, 1, 0, "uncoded")
        tie = np.random.default_rng([seed, 14]).permutation(n)
        order = sorted(range(n), key=lambda d: (-caps[d], tie[d]))
        counts = list(range(0, s + 2))

    # per-device CPU time of each scheme's product, alone in this process (no contention)
    alone = {name: _block_cpu_seconds(A, code, X) for name, code in codes.items()}

    _quiet_dask()
    results: dict[str, Any] = {
        name: {
            "weight": int(code.weight),
            "k": int(code.k),
            "stragglers_tolerated": int(code.stragglers),
            "device_cpu_seconds_alone": alone[name],
            "device_cpu_seconds_alone_median": statistics.median(alone[name]),
            "rows": [],
        }
        for name, code in codes.items()
    }
    t_up = time.perf_counter()
    with EdgeCluster(n, cpu=base_cpu, link_mbit=link_mbit) as edge:
        pool = edge.pool(timeout=timeout)
        cluster_seconds = time.perf_counter() - t_up
        ops = {name: CodedMatVec(A, code, pool) for name, code in codes.items()}
        try:
            for j in counts:
                slow = sorted(order[:j])
                for d in range(n):
                    edge.set_cpu([d], slow_cpu if d in slow else base_cpu[d])
                per: dict[str, list[dict[str, Any]]] = {name: [] for name in ops}
                for _ in range(warmup):
                    for op in ops.values():
                        _one_round(op, X, ref)
                for r in range(rounds):
                    # the schemes take turns, starting each round with the next one
                    turn = list(ops)[r % len(ops) :] + list(ops)[: r % len(ops)]
                    for name in turn:
                        per[name].append(_one_round(ops[name], X, ref))
                if progress:
                    print(f"  {j} slow devices done", file=sys.stderr, flush=True)
                for name, rr in per.items():
                    results[name]["rows"].append(
                        {
                            "slow_devices": j,
                            "slow_hosts": slow,
                            "beyond_tolerance": j > results[name]["stragglers_tolerated"],
                            "cpu": list(edge.cpu),
                            **_stats(rr),
                            "rounds": rr,
                        }
                    )
        finally:
            for op in ops.values():
                op.close()
    for r in results.values():
        base = r["rows"][0].get("completion_seconds_median")
        for row in r["rows"]:
            c = row.get("completion_seconds_median")
            row["ratio_to_no_stragglers"] = c / base if (c is not None and base) else None
    headline: dict[str, Any] = {}
    at_s = min(s, len(counts) - 1)
    if "sparse" in results:
        headline["sparse ratio with s slow devices"] = results["sparse"]["rows"][at_s][
            "ratio_to_no_stragglers"
        ]
    if "uncoded" in results:
        headline["uncoded ratio with s slow devices"] = results["uncoded"]["rows"][at_s][
            "ratio_to_no_stragglers"
        ]
    if "mds" in results and "sparse" in results:
        headline["mds / sparse device CPU time alone"] = (
            results["mds"]["device_cpu_seconds_alone_median"]
            / results["sparse"]["device_cpu_seconds_alone_median"]
        )
        w0 = [results[x]["rows"][0].get("worker_compute_seconds_median") for x in ("mds", "sparse")]
        if all(w0):
            headline["mds / sparse worker compute in the rounds (no stragglers)"] = w0[0] / w0[1]
    machine["load_average_at_end"] = list(os.getloadavg())
    from . import __version__

    return {
        "experiment": f"edge-{kind}",
        "kind": kind,
        "mode": "live, emulated edge cluster (netns hosts, sshd, cpu cgroups, Dask over SSH)",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_seconds": time.time() - started,
        "cluster_start_seconds": cluster_seconds,
        "machine": machine,
        "versions": {
            "python": platform.python_version(),
            "sparsecoded": __version__,
            "numpy": np.__version__,
            "git_commit": _git_commit(),
        },
        "parameters": {
            "kind": kind,
            "hosts": n,
            "k": k,
            "slow_cpu": slow_cpu,
            "cpu": cpu,
            "cpu_per_host": base_cpu,
            "cpu_sum": sum(base_cpu),
            "link_mbit": link_mbit,
            "matrix": str(matrix),
            "columns": columns,
            "schemes": names,
            "capacities": caps,
            "rounds": rounds,
            "warmup": warmup,
            "seed": seed,
            "timeout": timeout,
        },
        "input": {
            "name": Path(matrix).name.split(".")[0],
            "shape": list(A.shape),
            "nnz": int(A.nnz),
            "density": A.nnz / (A.shape[0] * A.shape[1]),
        },
        "s": s,
        "counts": counts,
        "slow_order": [int(d) for d in order],
        "schemes": results,
        "headline": headline,
    }


def _git_commit() -> str | None:
    import subprocess

    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        return out or None
    return None


def plot(record: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.5, 3.9), gridspec_kw={"width_ratios": [3, 2]})
    for i, (name, r) in enumerate(record["schemes"].items()):
        rows = [q for q in r["rows"] if q.get("completion_seconds_median") is not None]
        xs = [q["slow_devices"] for q in rows]
        med = [q["completion_seconds_median"] * 1e3 for q in rows]
        lo = [q["completion_seconds_iqr"][0] * 1e3 for q in rows]
        hi = [q["completion_seconds_iqr"][1] * 1e3 for q in rows]
        ax.plot(xs, med, "o-", color=f"C{i}", label=f"{name} (k={r['k']}, w={r['weight']})")
        ax.fill_between(xs, lo, hi, color=f"C{i}", alpha=0.15)
        bx.bar(i, r["device_cpu_seconds_alone_median"] * 1e3, color=f"C{i}")
    ax.axvline(record["s"] + 0.5, color="gray", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel(f"slow devices (throttled to {record['parameters']['slow_cpu']:g} of a core)")
    ax.set_ylabel("round + decode (ms, log; band: IQR)")
    ax.legend(fontsize=7)
    bx.set_xticks(range(len(record["schemes"])), list(record["schemes"]), rotation=30, fontsize=8)
    bx.set_ylabel("device product alone, CPU ms")
    p = record["parameters"]
    fig.suptitle(
        f"{record['experiment']}: {p['hosts']} emulated hosts at {p['cpu_per_host'][0]:.2g}"
        f"{'..' + format(max(p['cpu_per_host']), '.2g') if len(set(p['cpu_per_host'])) > 1 else ''}"
        f" core, {record['input']['name']} x {p['columns']} columns, "
        f"{record['machine']['usable_cores']} cores",
        fontsize=9,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def summary(record: dict[str, Any]) -> list[str]:
    out = [
        f"{record['experiment']}: {record['parameters']['hosts']} hosts, "
        f"{record['elapsed_seconds']:.0f} s"
    ]
    for name, r in record["schemes"].items():
        cells = [
            "fail"
            if q.get("completion_seconds_median") is None
            else f"{q['completion_seconds_median'] * 1e3:.0f}"
            for q in r["rows"]
        ]
        out.append(f"  {name:<11} ms by slow devices 0..: " + " ".join(cells))
    for key, v in record["headline"].items():
        out.append(f"  {key}: {v:.2f}x" if v is not None else f"  {key}: n/a")
    return out


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m sparsecoded.edge_experiment``), until the merge."""
    parser = argparse.ArgumentParser(prog="python -m sparsecoded.edge_experiment")
    parser.add_argument("kind", choices=("completion", "heterogeneous"))
    parser.add_argument("--matrix", default=DEFAULT_MATRIX)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", default=None)
    parser.add_argument("--schemes", default=None)
    parser.add_argument("--capacities", default=None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    add_arguments(parser)
    a = parser.parse_args(argv)
    a.name = a.kind
    return run_from_args(a)


def run_from_args(a: argparse.Namespace) -> int:
    """``sparsecoded experiment completion|heterogeneous --emulate N ...``: run, write, print."""
    import json

    if a.name not in ("completion", "heterogeneous"):
        raise ValueError(f"--emulate runs completion or heterogeneous, not {a.name}")
    k = a.k
    if isinstance(k, str):
        k = int(k.split(",")[0])
    record = run(
        kind=a.name,
        hosts=a.emulate or 6,
        k=k,
        slow_cpu=a.slow_cpu,
        cpu=a.cpu,
        link_mbit=a.link_mbit,
        matrix=a.matrix or DEFAULT_MATRIX,
        columns=a.columns,
        schemes=a.schemes,
        capacities=a.capacities,
        rounds=a.rounds,
        warmup=a.warmup,
        seed=a.seed,
        timeout=getattr(a, "timeout", 120.0),
        progress=not getattr(a, "no_progress", False),
    )
    record["command"] = "sparsecoded " + " ".join(getattr(a, "argv", None) or sys.argv[1:])
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(record, indent=1))
    if a.plot:
        plot(record, a.plot)
    for line in summary(record):
        print(line)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
