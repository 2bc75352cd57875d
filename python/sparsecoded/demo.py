"""``sparsecoded demo``: the main job, end to end, on the local pool.

Encodes a random sparse matrix for ``n`` worker processes, makes ``s = n - k``
of them sleep in every round, and answers ``A @ x`` with the sparse code, the
uncoded baseline and a dense MDS code on the same workers under the same
stragglers.  It prints each one's times and error against scipy, what each
column means, and the figure that matters: the round time with stragglers,
coded against uncoded.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .stragglers import Action, FixedDelay, StragglerModel

_COLUMNS = """\
What the columns mean:
  weight              row blocks of A mixed into each worker's coded block: the sparse code
                      mixes few, dense MDS mixes all k, uncoded stores one block per worker.
  encode ms           building every worker's coded block (once; the blocks then stay placed).
  round ms            median time of one A @ x, no stragglers: every worker computes at once.
  with stragglers ms  the same with the s stragglers sleeping {delay:g} s in every round.
  rel. error          largest error of the answers against scipy's A @ x."""

_NOTES = """\
Reading it:
  - The coded jobs decode from the first k answers, so they never wait for the sleeping
    stragglers; the uncoded job needs every block, so it waits for them every round.
  - On this machine's {cores} core(s) the {n} workers share the CPU.  A sleeping straggler
    computes nothing, so the k on-time workers get the cores to themselves: a round with
    stragglers can be faster than one without.
  - scipy in one process ({scipy_ms:.1f} ms) beats {n} workers sharing {cores} core(s): the pool
    pays off when the workers are separate machines, each computing its block alone while
    the slow ones are ignored."""


class _Steps:
    """What the demo is doing, on standard error when it is a terminal."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled and _is_terminal(sys.stderr):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, file=sys.stderr, leave=False, unit="step")

    def start(self, what: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(what)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Switch(StragglerModel):
    """``model`` while ``on``, nobody straggling otherwise: one placed job serves both timings."""

    def __init__(self, model: StragglerModel):
        self.model = model
        self.on = False

    def action(self, worker: int, round_index: int) -> Action:
        return self.model.action(worker, round_index) if self.on else Action()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _median_round(op: Any, x: np.ndarray, rounds: int) -> tuple[float, np.ndarray]:
    times, y = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        y = op @ x
        times.append(time.perf_counter() - t0)
    if y is None:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    return statistics.median(times), y


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_demo(
    *,
    workers: int = 8,
    k: int = 6,
    size: Sequence[int] = (60000, 40000),
    density: float = 0.005,
    delay: float = 1.0,
    rounds: int = 3,
    seed: int = 0,
    no_progress: bool = False,
) -> int:
    """Run the demo and print its table; 0 when every answer matches scipy, else 1."""
    from . import CodedMatVec, LocalPool, design_mv

    n = workers
    if not 1 <= k <= n:
        raise ValueError(f"--k must be between 1 and --workers = {n}, got {k}")
    s = n - k
    schemes = (("sparse", k), ("mds", k), ("uncoded", n))
    steps = _Steps(1 + 3 * len(schemes), enabled=not no_progress)
    try:
        steps.start("drawing A")
        rng = np.random.default_rng(seed)
        m, c = size
        A = sp.random_array((m, c), density=density, format="csr", rng=rng)
        x = rng.standard_normal(c)
        t0 = time.perf_counter()
        y_ref = A @ x
        t_scipy = time.perf_counter() - t0
        slow = sorted(rng.choice(n, size=s, replace=False).tolist())
        steps.done()
        print(
            f"A: {m} x {c} at density {density:g} ({A.nnz} nonzeros); "
            f"{n} worker processes, k = {k}, so up to s = {s} stragglers"
        )
        print(
            f"stragglers: workers {slow} sleep {delay:g} s in every round; "
            f"scipy A @ x took {t_scipy * 1e3:.1f} ms\n",
            flush=True,
        )
        rows, worst = [], 0.0
        with LocalPool(n) as pool:
            for scheme, kk in schemes:
                steps.start(f"{scheme}: encoding")
                code = design_mv(n, kk, scheme, seed=seed)
                switch = _Switch(FixedDelay(workers=slow, seconds=delay))
                with CodedMatVec(A, code, pool, stragglers=switch) as op:
                    report = op.report
                    if report is None:  # set by the constructor, once the blocks are placed
                        raise RuntimeError("CodedMatVec has no report after placing its blocks")
                    enc = report.encode_seconds
                    steps.done()
                    steps.start(f"{scheme}: rounds")
                    t_clean, y = _median_round(op, x, rounds)
                    steps.done()
                    steps.start(f"{scheme}: rounds with stragglers")
                    switch.on = True
                    t_slow, y2 = _median_round(op, x, rounds)
                    steps.done()
                diff = max(np.linalg.norm(y - y_ref), np.linalg.norm(y2 - y_ref))
                ref = np.linalg.norm(y_ref)
                err = float(diff / ref if ref > 0 else diff)  # absolute when A @ x is 0
                # NaN compares False: max(worst, nan) would keep worst and pass
                worst = err if not np.isfinite(err) else max(worst, err)
                rows.append((scheme, code.weight, enc, t_clean, t_slow, err))
    finally:
        steps.close()
    header = (
        f"{'scheme':<10} {'weight':>6} {'encode ms':>10} {'round ms':>10} "
        f"{'with stragglers ms':>19} {'rel. error':>11}"
    )
    print(header)
    print("-" * len(header))
    for scheme, w, enc, t_clean, t_slow, err in rows:
        print(
            f"{scheme:<10} {w:>6} {enc * 1e3:>10.1f} {t_clean * 1e3:>10.1f} "
            f"{t_slow * 1e3:>19.1f} {err:>11.1e}"
        )
    print()
    print(_COLUMNS.format(delay=delay))
    print()
    print(_NOTES.format(cores=_cores(), n=n, scipy_ms=t_scipy * 1e3))
    slow_ms = {scheme: t_slow * 1e3 for scheme, _, _, _, t_slow, _ in rows}
    print(
        f"\nWith {s} straggler(s) sleeping {delay:g} s: sparse code {slow_ms['sparse']:.1f} ms "
        f"a round, uncoded {slow_ms['uncoded']:.1f} ms"
        + (
            f" ({slow_ms['uncoded'] / slow_ms['sparse']:.1f}x faster coded)."
            if slow_ms["sparse"] > 0
            else "."
        )
    )
    ok = bool(np.isfinite(worst)) and worst < 1e-8
    print(f"check against scipy: {'OK' if ok else 'FAILED'} (largest relative error {worst:.1e})")
    return 0 if ok else 1
