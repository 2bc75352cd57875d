"""The live edge mode of ``completion`` and ``heterogeneous`` (``--emulate N``): slow devices.

Stragglers here are devices, not sleeps: every host is an
:class:`~sparsecoded.emulate.EdgeCluster` network namespace with its own sshd
and a cpu cgroup, the Dask workers run inside it over SSH, and a straggler is
a host whose quota is lowered to ``slow_cpu`` of a core for the rounds of that
setting (``EdgeCluster.set_cpu``).  Its computation, its Dask event loop and
its (de)serialisation all run at that speed.

``kind="completion"``: the round time against the number of slow devices
0..s and s + 1, for each scheme on the same hosts and matrix (uncoded with
k = n blocks, one per device; the others with the given k, default n - 2).
Within one straggler setting the schemes take turns round by round, so a
change of the machine's load hits them alike.

``kind="heterogeneous"``: devices of capacities ``capacities`` get quotas in
the same proportion (``capacity x cpu_unit``); the sparse code stores
``capacities[d]`` coded blocks on device ``d``, against a dense MDS code and
the uncoded split on the same block layout; the largest devices slow down
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

Why not :func:`~sparsecoded.experiments.measure.straggler_sweep`: it injects
a straggler model into one placed job at a time; here the stragglers are the
hosts themselves, throttled once per setting for every scheme, and the
schemes' rounds interleave.  Each round is :func:`~.measure.run_round` and
each setting :func:`~.measure.summarise`, as there.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..design import MVCode, design_mv
from ..jobs import CodedMatVec
from . import inputs
from .measure import measure_workers, run_round, summarise
from .record import MODE_LIVE, jsonable, machine_info, progress, pyplot, save

__all__ = ["add_arguments", "is_edge", "plot", "run", "summary"]

DEFAULT_MATRIX = "/work/shared/data/bcsstk16.mtx.gz"
COMPLETION_SCHEMES = ("uncoded", "replication", "mds", "polynomial", "sparse")
HETEROGENEOUS_SCHEMES = ("uncoded", "mds", "sparse")
BACKEND = "DaskPool over SSH on an EdgeCluster (netns hosts, sshd, cpu cgroups)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The edge flags of ``completion`` and ``heterogeneous``: ``--emulate N --slow-cpu F``...

    With ``--emulate`` the experiment's own ``--matrix``, ``--seed``, ``--k``,
    ``--schemes``, ``--capacities``, ``--rounds``, ``--warmup`` and
    ``--timeout`` are read too; ``--workers``, the straggler models and the
    CPU replay are not (the hosts are the workers, throttling the stragglers).
    """
    g = parser.add_argument_group("emulated edge cluster (root, Linux)")
    g.add_argument(
        "--emulate",
        type=inputs.at_least(1),
        default=None,
        metavar="N",
        help="run live on N emulated hosts (network namespaces, sshd, cpu cgroups); "
        f"without --matrix on {DEFAULT_MATRIX}",
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
        "--columns",
        type=inputs.at_least(1),
        default=32,
        help="--emulate: columns of X in A @ X (default 32)",
    )


def is_edge(record: dict[str, Any]) -> bool:
    """Whether ``record`` came from the edge mode (its plot and summary are this module's)."""
    return "edge" in record


def _quiet_dask() -> None:
    # Dask logs every worker start and stop at INFO; the record says what matters.
    # Its import sets its loggers' levels: import it first.
    import distributed  # noqa: F401

    for name in ("distributed", "distributed.deploy.ssh", "asyncssh"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _completion_setup(
    n: int, k: Any, names: list[str], cores: int, cpu: float | None, seed: int
) -> tuple[dict[str, Any], list[float], list[int], list[int], int, int]:
    kk = n - 2 if k is None else inputs.ints(k)[0]
    if not 1 <= kk <= n:
        raise ValueError(f"k must be between 1 and {n}, got {kk}")
    base_cpu = [min(1.0, 0.9 * cores / n) if cpu is None else float(cpu)] * n
    codes = {name: design_mv(n, n if name == "uncoded" else kk, name, seed=seed) for name in names}
    order = np.random.default_rng([seed, 12]).permutation(n).tolist()
    s = n - kk
    return codes, base_cpu, order, list(range(0, min(s + 1, n) + 1)), kk, s


def _heterogeneous_setup(
    n: int, k: Any, names: list[str], caps: list[int], cores: int, cpu: float | None, seed: int
) -> tuple[dict[str, Any], list[float], list[int], list[int], int, int]:
    if len(caps) != n:
        raise ValueError(f"capacities has {len(caps)} entries, expected {n}")
    total = sum(caps)
    unit = (0.9 * cores / total) if cpu is None else float(cpu) / max(caps)
    base_cpu = [c * unit for c in caps]
    kk = total - max(caps) if k is None else inputs.ints(k)[0]
    sparse_code = design_mv(n, kk, "sparse", seed=seed, capacities=caps)
    owner = [int(d) for d in sparse_code.owner]
    N, s = sparse_code.n_rows, int(sparse_code.stragglers)
    crng = np.random.default_rng([seed, 13])
    codes: dict[str, Any] = {}
    for name in names:
        if name == "sparse":
            codes[name] = sparse_code
        elif name == "mds":  # i.i.d. Gaussian: generic
            E = crng.standard_normal((N, kk))
            codes[name] = MVCode.from_matrix(
                E, owner=owner, stragglers=s, scheme="mds", generic=True
            )
        else:  # uncoded: the k blocks on the first k coded slots, no redundancy
            m = min(N, kk)
            E = sp.csr_array((np.ones(m), (np.arange(m), np.arange(m))), shape=(N, kk))
            codes[name] = MVCode.from_matrix(E, owner=owner, stragglers=0, scheme="uncoded")
    tie = np.random.default_rng([seed, 14]).permutation(n)
    order = sorted(range(n), key=lambda d: (-caps[d], tie[d]))
    return codes, base_cpu, order, list(range(0, s + 2)), kk, s


def _spread(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """What the edge rows add to :func:`summarise`: the spread, and the workers' own clock."""
    ok = [r["completion_seconds"] for r in rounds if r["ok"]]
    if not ok:
        return {}
    q = np.percentile(ok, [25, 75])
    comp = [v for r in rounds if r["ok"] for v in r["compute_seconds"].values()]
    return {
        "completion_seconds_min": min(ok),
        "completion_seconds_max": max(ok),
        "completion_seconds_iqr": [float(q[0]), float(q[1])],
        "worker_compute_seconds_median": statistics.median(comp) if comp else None,
    }


def _round(op: Any, X: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    r = run_round(op, X, ref)
    if r["ok"]:
        r["rows_used"] = list(op.report.rows_used)
    return r


def _headline(results: dict[str, Any], s: int, counts: list[int]) -> dict[str, Any]:
    headline: dict[str, Any] = {}
    at_s = min(s, len(counts) - 1)
    for name in ("sparse", "uncoded"):
        if name in results:
            headline[f"{name} ratio with s slow devices"] = results[name]["rows"][at_s][
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
    return headline


def run(
    *,
    kind: str = "completion",
    hosts: int = 6,
    k: Any = None,
    slow_cpu: float = 0.1,
    cpu: float | None = None,
    link_mbit: float | None = None,
    matrix: str | None = None,
    columns: int = 32,
    schemes: Any = None,
    capacities: Any = None,
    rounds: int = 7,
    warmup: int = 2,
    seed: int = 0,
    timeout: float = 120.0,
    no_progress: bool = False,
    live: bool = False,
    dask: bool = False,
) -> dict[str, Any]:
    """Run ``kind`` on a fresh :class:`~sparsecoded.emulate.EdgeCluster` of ``hosts``; the figures.

    ``matrix`` defaults to :data:`DEFAULT_MATRIX`; ``capacities`` (heterogeneous)
    to 1,2,3,1,2,3,...  ``live`` and ``dask`` are refused: the hosts are the backend.
    """
    from ..emulate import EdgeCluster

    if kind not in ("completion", "heterogeneous"):
        raise ValueError(f"kind must be completion or heterogeneous, got {kind!r}")
    if live or dask:
        raise ValueError("--emulate runs on its own hosts: drop --live / --dask")
    if rounds < 1 or warmup < 0 or columns < 1:
        raise ValueError("rounds and columns must be >= 1, warmup >= 0")
    n = int(hosts)
    cores = int(machine_info()["usable_cores"] or 1)
    allowed = COMPLETION_SCHEMES if kind == "completion" else HETEROGENEOUS_SCHEMES
    names = inputs.schemes(schemes, ",".join(allowed), allowed=allowed)
    caps = None
    if kind == "completion":
        setup = _completion_setup(n, k, names, cores, cpu, seed)
    else:
        caps = inputs.ints(capacities) if capacities else [1 + (i % 3) for i in range(n)]
        setup = _heterogeneous_setup(n, k, names, caps, cores, cpu, seed)
    codes, base_cpu, order, counts, kk, s = setup
    inp = inputs.matrix_input(matrix or DEFAULT_MATRIX, (0, 0), 0.0, seed)
    A = inp.A
    rng = np.random.default_rng([seed, 11])
    X = rng.standard_normal((A.shape[1], columns) if columns > 1 else A.shape[1])
    ref = A @ X
    results: dict[str, Any] = {}
    for name, code in codes.items():
        # each device's product alone, CPU time in this process (no contention)
        alone = [t for t in measure_workers(A, code, X, reps=3)["worker_times"] if t is not None]
        results[name] = {
            "weight": int(code.weight),
            "k": int(code.k),
            "stragglers_tolerated": int(code.stragglers),
            "device_cpu_seconds_alone": alone,
            "device_cpu_seconds_alone_median": statistics.median(alone),
            "rows": [],
        }
    _quiet_dask()
    steps = len(counts) * rounds * len(codes)
    t_up = time.perf_counter()
    with (
        EdgeCluster(n, cpu=base_cpu, link_mbit=link_mbit) as edge,
        progress(steps, f"edge {kind}", no_progress) as bar,
    ):
        pool = edge.pool(timeout=timeout)
        cluster_seconds = time.perf_counter() - t_up
        ops = {name: CodedMatVec(A, code, pool) for name, code in codes.items()}
        try:
            for j in counts:
                slow = sorted(order[:j])
                bar.set_postfix_str(f"{j} slow")
                for d in range(n):
                    edge.set_cpu([d], slow_cpu if d in slow else base_cpu[d])
                per: dict[str, list[dict[str, Any]]] = {name: [] for name in ops}
                for _ in range(warmup):
                    for op in ops.values():
                        _round(op, X, ref)
                for r in range(rounds):
                    # the schemes take turns, starting each round with the next one
                    turn = list(ops)[r % len(ops) :] + list(ops)[: r % len(ops)]
                    for name in turn:
                        per[name].append(_round(ops[name], X, ref))
                        bar.update(1)
                for name, rr in per.items():
                    results[name]["rows"].append(
                        {
                            "slow_devices": j,
                            "slow_hosts": slow,
                            "beyond_tolerance": j > results[name]["stragglers_tolerated"],
                            "cpu": list(edge.cpu),
                            **summarise(rr),
                            **_spread(rr),
                            "rounds": rr,
                        }
                    )
        finally:
            for op in ops.values():
                op.close()
    for res in results.values():
        base = res["rows"][0].get("completion_seconds_median")
        for row in res["rows"]:
            c = row.get("completion_seconds_median")
            row["ratio_to_no_stragglers"] = c / base if (c is not None and base) else None
    return jsonable(
        {
            "mode": MODE_LIVE,
            "backend": BACKEND,
            "edge": {
                "kind": kind,
                "hosts": n,
                "slow_cpu": slow_cpu,
                "cpu": cpu,
                "cpu_per_host": base_cpu,
                "cpu_sum": sum(base_cpu),
                "link_mbit": link_mbit,
                "columns": columns,
                "usable_cores": cores,
                "cluster_start_seconds": cluster_seconds,
            },
            "input": inp.meta,
            "workers": n,
            "k": kk,
            "s": s,
            "capacities": caps,
            "counts": counts,
            "slow_order": [int(d) for d in order],
            "schemes": results,
            "headline": _headline(results, s, counts),
        }
    )


def plot(record: dict[str, Any], path: str) -> None:
    """Round + decode by slow devices per scheme (IQR band), and each device's product alone."""
    plt = pyplot()
    e = record["edge"]
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
    ax.set_xlabel(f"slow devices (throttled to {e['slow_cpu']:g} of a core)")
    ax.set_ylabel("round + decode (ms, log; band: IQR)")
    ax.legend(fontsize=7)
    bx.set_xticks(range(len(record["schemes"])), list(record["schemes"]), rotation=30, fontsize=8)
    bx.set_ylabel("device product alone, CPU ms")
    cpus = e["cpu_per_host"]
    span = f"{min(cpus):.2g}" + (f"..{max(cpus):.2g}" if len(set(cpus)) > 1 else "")
    fig.suptitle(
        f"edge {e['kind']}: {e['hosts']} emulated hosts at {span} core, "
        f"{record['input'].get('name', 'random')} x {e['columns']} columns, "
        f"{e['usable_cores']} cores",
        fontsize=9,
    )
    save(fig, path)


def summary(record: dict[str, Any]) -> list[str]:
    """Per scheme: median round + decode in ms by number of slow devices; the headline ratios."""
    e = record["edge"]
    took = f", {record['elapsed_seconds']:.0f} s" if "elapsed_seconds" in record else ""
    out = [f"edge {e['kind']}: mode {record['mode']}, {e['hosts']} emulated hosts{took}"]
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
