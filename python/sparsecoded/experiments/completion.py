"""End-to-end round time against the number of stragglers, 0 .. s and s + 1.

Per scheme, the blocks are placed once; then j = 0 .. s + 1 workers straggle
under each model (a fixed delay, shifted-exponential delays, or a crash) and
the rounds are timed, decode included.  In simulated mode every setting is
also replayed from the per-block CPU times (``cpu_replay_*``), which the load
of a shared machine cannot inflate.  Beyond s stragglers a round fails, and
the failure is recorded.

``--emulate N``: live on N emulated edge hosts whose stragglers are devices
throttled to ``--slow-cpu`` of a core (:mod:`.edge`, root and Linux).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..decode import Decoder
from ..design import design_mv
from ..jobs import CodedMatVec
from . import edge, inputs
from .measure import (
    add_pool_arguments,
    add_straggler_arguments,
    measure_workers,
    model_names,
    open_pool,
    straggler_order,
    straggler_sweep,
)
from .record import MODE_SIMULATED, headline, progress, pyplot, save


def add_round_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("measurement")
    g.add_argument(
        "--reps",
        type=inputs.at_least(1),
        default=5,
        help="timed repetitions of each block's product for the CPU replay (median; default 5)",
    )
    g.add_argument(
        "--rounds",
        type=inputs.at_least(1),
        default=3,
        help="rounds per straggler setting (default 3)",
    )
    g.add_argument(
        "--warmup",
        type=inputs.at_least(0),
        default=1,
        help="untimed rounds after placing the blocks (default 1)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inputs.add_matrix_arguments(parser, sweep=False)
    g = parser.add_argument_group("code")
    g.add_argument("--workers", default="8", help="workers n (default 8)")
    g.add_argument(
        "--k", default=None, help="row blocks k (default 6: s = n - k; with --emulate N: N - 2)"
    )
    g.add_argument(
        "--schemes",
        default=None,
        help="comma list of sparse, uncoded, replication, mds, polynomial, orthopoly "
        "(default sparse,mds,uncoded)",
    )
    add_round_arguments(parser)
    add_straggler_arguments(parser)
    add_pool_arguments(parser)
    edge.add_arguments(parser)


def run(
    *,
    matrix: str | None = None,
    size: Sequence[int] = (32000, 20000),
    density: Any = "0.01",
    seed: int = 0,
    workers: Any = "8",
    k: Any = None,
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
    """Rounds of every scheme with 0 .. s + 1 stragglers under every model.

    With ``emulate`` the figures are :func:`.edge.run`'s on that many hosts.
    """
    if emulate is not None:
        return edge.run(
            kind="completion",
            hosts=emulate,
            k=k,
            slow_cpu=slow_cpu,
            cpu=cpu,
            link_mbit=link_mbit,
            matrix=matrix,
            columns=columns,
            schemes=schemes,
            rounds=rounds,
            warmup=warmup,
            seed=seed,
            timeout=timeout,
            no_progress=no_progress,
            live=live,
            dask=dask,
        )
    n, kk = inputs.ints(workers)[0], inputs.ints(6 if k is None else k)[0]
    if not 1 <= kk <= n:
        raise ValueError(f"--k must be between 1 and --workers = {n}, got {kk}")
    s = n - kk
    chosen = inputs.schemes(schemes, "sparse,mds,uncoded")
    model_list = model_names(models)
    inp = inputs.matrix_input(matrix, size, inputs.floats(density)[0] if not matrix else 0.0, seed)
    A = inp.A
    x = np.random.default_rng([seed, 3]).standard_normal(A.shape[1])
    y_ref = A @ x
    order = straggler_order(n, kk, seed)
    counts = list(range(0, min(s + 1, n) + 1))
    results: dict[str, Any] = {}
    steps = len(chosen) * len(model_list) * len(counts) * rounds
    with (
        open_pool(n, live=live, dask=dask, timeout=timeout) as (pool, mode, backend),
        progress(steps, "completion", no_progress) as bar,
    ):
        for scheme in chosen:
            code = design_mv(n, kk, scheme, seed=seed)
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
                    slow=lambda j: order[:j],
                    tolerated=s,
                    delay=delay,
                    seed=seed,
                    rounds=rounds,
                    warmup=warmup,
                    timeout=timeout,
                    row_times=row_times,
                    owner=code.owner,
                    decoder=Decoder(code.encoding) if row_times is not None else None,
                    bar=bar,
                    label=scheme,
                )
            results[scheme] = {
                "weight": int(code.weight),
                "stragglers_tolerated": int(code.stragglers),
                "encode_seconds": encode_seconds,
                "models": per_model,
            }
    return {
        "input": inp.meta,
        "workers": n,
        "k": kk,
        "s": s,
        "counts": counts,
        "models": model_list,
        "delay_seconds": delay,
        "backend": backend,
        "mode": mode,
        "schemes": results,
        "targets": _targets(results, s),
    }


def _targets(results: dict[str, Any], s: int) -> dict[str, Any]:
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
        "completion with s stragglers <= 1.2 x no-straggler (sparse)": headline,
        "decode share of a round <= 0.05": headline,
    }


def plot_rounds_and_replay(
    ax: Any, record: dict[str, Any], model_name: str, label: Callable[[str, dict], str]
) -> None:
    """One scheme a colour: measured completion (solid) and its CPU replay (dashed)."""
    for i, (scheme, r) in enumerate(record["schemes"].items()):
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


def plot(record: dict[str, Any], path: str) -> None:
    if edge.is_edge(record):
        return edge.plot(record, path)
    plt = pyplot()
    models = record["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, model_name in zip(axes[0], models, strict=True):
        plot_rounds_and_replay(
            ax, record, model_name, lambda scheme, r: f"{scheme} (w={r['weight']}), rounds"
        )
        for i, r in enumerate(record["schemes"].values()):
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
        ax.axvline(record["s"] + 0.5, color="gray", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("stragglers")
        ax.set_title(model_name, fontsize=10)
        ax.set_ylabel("completion time (ms, log)")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Completion, n={record['workers']}, k={record['k']} (s={record['s']}), "
        f"mode {record['mode']}",
        fontsize=11,
    )
    save(fig, path)


def summary(record: dict[str, Any]) -> list[str]:
    """Per scheme and model: median completion (CPU replay) in ms by number of stragglers."""
    if edge.is_edge(record):
        return edge.summary(record)
    out = [headline(record)]
    for s, r in record.get("schemes", {}).items():
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
    return out
