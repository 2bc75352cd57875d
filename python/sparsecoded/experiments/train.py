"""Logistic regression by gradient descent on coded workers: time to a target loss per scheme.

Every step needs ``A @ w`` and ``A.T @ r``: two coded rounds (the forward job
and its transpose job, see :class:`~sparsecoded.CodedMatVec`).  The same
workers straggle in every round under each scheme (``--stragglers`` of them,
delayed ``--delay-factor`` times a no-straggler round of the sparse code, or
``--delay`` seconds).  Each scheme tolerates the same number of stragglers
where it can: sparse and dense MDS with ``k`` blocks, replication with
``n // (s + 1)`` blocks, uncoded (``k = n``) none.

The labels come from a seeded planted logistic model
(:func:`sparsecoded.learn.planted_labels`): the matrices in ``shared/data``
(a9a, news20) are shipped without labels.  The same gradient descent on
scipy's ``A`` is the oracle: every scheme's final loss and accuracy must
equal it to 1e-9 relative.  Time is wall clock on live pools, and the
rounds' simulated time (virtual clock plus decode) on the in-process pool.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np

from ..design import design_mv
from ..jobs import CodedMatVec
from ..learn import logistic_regression, planted_labels, spectral_norm
from ..stragglers import FixedDelay
from . import inputs
from .measure import add_pool_arguments, open_pool, straggler_order
from .record import headline, progress, pyplot, save

DEFAULT_SCHEMES = "sparse,uncoded,replication,mds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inputs.add_matrix_arguments(parser, size=(20000, 123), sweep=False)
    g = parser.add_argument_group("model")
    g.add_argument("--iterations", type=inputs.at_least(1), default=60, help="GD steps (60)")
    g.add_argument("--l2", type=float, default=1e-4, help="ridge weight (default 1e-4)")
    g.add_argument(
        "--target",
        type=float,
        default=None,
        help="target loss (default: scipy's loss after half the steps)",
    )
    g = parser.add_argument_group("code")
    g.add_argument("--workers", type=inputs.at_least(1), default=8, help="workers n (default 8)")
    g.add_argument("--k", type=inputs.at_least(1), default=6, help="row blocks k (default 6)")
    g.add_argument(
        "--schemes",
        default=DEFAULT_SCHEMES,
        help=f"comma list of sparse, uncoded, replication, mds (default {DEFAULT_SCHEMES})",
    )
    g = parser.add_argument_group("stragglers")
    g.add_argument(
        "--stragglers",
        type=int,
        default=None,
        help="workers delayed in every round (default n - k)",
    )
    g.add_argument(
        "--delay-factor",
        type=float,
        default=10.0,
        help="delay = this many no-straggler sparse rounds (default 10)",
    )
    g.add_argument("--delay", type=float, default=None, help="delay in seconds (overrides)")
    add_pool_arguments(parser)


def _code(scheme: str, n: int, k: int, s: int, seed: int):
    if scheme == "uncoded":
        return design_mv(n, n, "uncoded")
    if scheme == "replication":
        return design_mv(n, max(1, n // (s + 1)), "replication")
    return design_mv(n, k, scheme, seed=seed)


class _Clock:
    """Seconds of each step: wall clock (live) or the rounds' simulated time (InlinePool)."""

    def __init__(self, simulated: bool):
        self.simulated = simulated
        self.total = 0.0

    def on_round(self, report: Any) -> None:
        self.total += report.round_seconds + report.decode_seconds


def run(
    *,
    matrix: str | None = None,
    size: tuple[int, int] = (20000, 123),
    density: str | float = "0.11",
    seed: int = 0,
    iterations: int = 60,
    l2: float = 1e-4,
    target: float | None = None,
    workers: int = 8,
    k: int = 6,
    schemes: str = DEFAULT_SCHEMES,
    stragglers: int | None = None,
    delay_factor: float = 10.0,
    delay: float | None = None,
    live: bool = False,
    dask: bool = False,
    timeout: float = 60.0,
    no_progress: bool = False,
    **_: Any,
) -> dict[str, Any]:
    chosen = inputs.schemes(schemes, DEFAULT_SCHEMES, ("sparse", "uncoded", "replication", "mds"))
    for flag, value in (("--delay-factor", delay_factor), ("--delay", delay)):
        if value is not None and not (math.isfinite(float(value)) and float(value) >= 0):
            raise ValueError(f"{flag} must be a finite number >= 0, got {value!r}")
    n = int(workers)
    if not 1 <= k <= n:
        raise ValueError(f"--k must be in 1..n = {n}, got {k}")
    s = n - k if stragglers is None else int(stragglers)
    if not 0 <= s < n:
        raise ValueError(f"--stragglers must be in 0..{n - 1}, got {s}")
    dens = inputs.floats(density)[0]
    data = inputs.matrix_input(matrix, size, dens, seed)
    A = data.A.astype(np.float64)
    y, _w_star = planted_labels(A, seed=seed)
    step = 1.0 / (spectral_norm(A) ** 2 / (4.0 * A.shape[0]) + l2)
    ref = logistic_regression(A, y, l2=l2, step=step, iterations=iterations)
    goal = float(target) if target is not None else ref.losses[len(ref.losses) // 2]
    slow = straggler_order(n, k, seed)[:s]
    out: dict[str, Any] = {
        "matrix": data.meta,
        "labels": "planted logistic model (learn.planted_labels), seed " + str(seed),
        "n": n,
        "k": k,
        "stragglers": s,
        "straggler_workers": slow,
        "step": step,
        "target_loss": goal,
        "scipy": {
            "final_loss": ref.losses[-1],
            "accuracy": ref.accuracy,
            "seconds": ref.seconds[-1],
            "losses": ref.losses,
        },
        "schemes": {},
    }
    bar = progress(len(chosen), "schemes", no_progress)
    with open_pool(n, live=live, dask=dask, timeout=timeout) as (pool, mode, backend):
        out["mode"], out["backend"] = mode, backend
        simulated = mode == "simulated"
        sparse_round = None
        for scheme in chosen:
            code = _code(scheme, n, k, s, seed)
            clock = _Clock(simulated)
            with CodedMatVec(A, code, pool, on_round=clock.on_round, timeout=timeout) as op:
                w = np.random.default_rng(seed).standard_normal(A.shape[1])
                for _warm in range(3):  # place the transpose blocks, warm the decode caches
                    op @ w
                    op.T @ y
                if delay is None and sparse_round is None:
                    # a no-straggler round of the first scheme (sparse by default), both ways
                    rounds: list[float] = []
                    for _rep in range(5):
                        for product in (lambda w=w: op @ w, lambda: op.T @ y):
                            t0 = time.perf_counter()
                            product()
                            wall = time.perf_counter() - t0
                            rep = op.T.report if len(rounds) % 2 else op.report
                            assert rep is not None  # a round just ran
                            rounds.append(
                                rep.round_seconds + rep.decode_seconds if simulated else wall
                            )
                    sparse_round = float(np.median(rounds))
                seconds = float(delay) if delay is not None else delay_factor * (sparse_round or 0)
                op.stragglers = FixedDelay(slow, seconds=seconds) if s and seconds > 0 else None
                out.setdefault("delay_seconds", seconds)
                clock.total = 0.0
                steps: list[float] = []

                def tick(_i: int, _loss: float, _w: np.ndarray, steps=steps, clock=clock) -> None:
                    steps.append(clock.total if clock.simulated else time.perf_counter())

                t0 = time.perf_counter()
                try:
                    got = logistic_regression(
                        op, y, l2=l2, step=step, iterations=iterations, callback=tick
                    )
                except Exception as exc:  # noqa: BLE001 - recorded: the scheme failed
                    out["schemes"][scheme] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    bar.update(1)
                    continue
                end = clock.total if simulated else time.perf_counter()
                start = 0.0 if simulated else t0
                times = [t - start for t in steps] + [end - start]
                hit = next(
                    (t for t, loss in zip(times, got.losses, strict=True) if loss <= goal), None
                )
                rel = abs(got.losses[-1] - ref.losses[-1]) / abs(ref.losses[-1])
                out["schemes"][scheme] = {
                    "ok": True,
                    "k": code.k,
                    "weight": code.weight,
                    "tolerates": code.n_workers - code.k if scheme != "uncoded" else 0,
                    "losses": got.losses,
                    "seconds": times,
                    "time_to_target": hit,
                    "total_seconds": times[-1],
                    "final_loss": got.losses[-1],
                    "accuracy": got.accuracy,
                    "final_loss_rel_diff": rel,
                    "matches_scipy": bool(rel <= 1e-9 and got.accuracy == ref.accuracy),
                }
            bar.update(1)
    bar.close()
    base = out["schemes"].get("sparse", {}).get("time_to_target")
    out["time_to_target_vs_sparse"] = {
        name: (r["time_to_target"] / base if r.get("time_to_target") and base else None)
        for name, r in out["schemes"].items()
        if name != "sparse"
    }
    return out


def plot(record: dict[str, Any], path: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, r in record["schemes"].items():
        if r.get("ok"):
            ax.plot(r["seconds"], r["losses"], label=f"{name} (k={r['k']}, w={r['weight']})")
    ax.axhline(record["target_loss"], color="grey", lw=0.8, ls="--", label="target loss")
    ax.set_xlabel("seconds (" + record.get("mode", "") + ")")
    ax.set_ylabel("logistic loss")
    ax.set_title(
        f"GD on {record['matrix'].get('name', 'random')}: n={record['n']}, "
        f"{record['stragglers']} stragglers delayed {record.get('delay_seconds', 0):.3g} s"
    )
    ax.legend()
    save(fig, path)


def summary(record: dict[str, Any]) -> list[str]:
    lines = [headline(record)]
    lines.append(
        f"target loss {record['target_loss']:.6g}; scipy final loss "
        f"{record['scipy']['final_loss']:.6g}, accuracy {record['scipy']['accuracy']:.4f}"
    )
    for name, r in record["schemes"].items():
        if not r.get("ok"):
            lines.append(f"  {name:12s} failed: {r['error']}")
            continue
        ttt = r["time_to_target"]
        ttt_text = "never" if ttt is None else f"{ttt:.3f} s"
        ratio = record["time_to_target_vs_sparse"].get(name)
        vs = "" if ratio is None or math.isnan(ratio) else f" ({ratio:.2f}x sparse)"
        lines.append(
            f"  {name:12s} time to target {ttt_text}{vs}, total {r['total_seconds']:.3f} s, "
            f"loss matches scipy: {r['matches_scipy']} (rel {r['final_loss_rel_diff']:.1e})"
        )
    return lines
