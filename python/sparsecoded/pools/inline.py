"""An in-process pool: real computation, one payload at a time, on a simulated clock.

:class:`InlinePool` runs every worker's products in the calling process, one
after another, so workers never compete for cores.  It times each product,
then replays the round on a virtual clock: device ``w`` finishes its slot ``q``
at ``delay_w + t_w0 + ... + t_wq`` (its injected delay, then its products
back to back); a crashed device never answers.  Results are fed to the job's
``enough`` predicate in that order, and the round's ``seconds`` is the virtual
time at which it could decode.

This is the *measured-then-simulated* mode of the experiments (on a machine
with fewer cores than workers, the only way to see per-worker compute without
contention), and a deterministic backend for tests.  Every
:class:`~sparsecoded.pools.base.RoundResult` it returns says so in
``extra["mode"] == "simulated"``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..stragglers import Action
from .base import (
    PlacedJob,
    PoolBase,
    RoundResult,
    SlotKey,
    check_timeout,
    compute_placed,
    place_payloads,
)

__all__ = ["InlinePool", "Timeline", "virtual_clock"]


@dataclass
class Timeline:
    """A round replayed on the virtual clock (see :func:`virtual_clock`)."""

    #: slots in arrival order, up to and including the deciding one
    order: list[SlotKey]
    #: the virtual time each slot in ``order`` arrived
    times: list[float]
    #: when ``enough`` first held; None when it never did (within the limit)
    decided_at: float | None
    #: devices that crashed (never answer)
    dead: list[int]
    #: True when arrivals after ``limit`` were left out
    timed_out: bool = False


def virtual_clock(
    durations: Sequence[Sequence[float | None]],
    actions: Sequence[Action] | None,
    enough: Callable[[Sequence[SlotKey]], bool],
    *,
    limit: float = math.inf,
) -> Timeline:
    """THE virtual clock: when would a round have decided, given per-slot compute times?

    Device ``w`` waits ``actions[w].delay``, then computes its slots one after
    another, slot ``q`` taking ``durations[w][q]`` seconds (None: the slot is
    not computed, e.g. a block the device does not hold), and sends each as
    soon as it is done; a crashed device never answers.  Arrivals are taken in
    time order until ``enough(order)`` holds.  :class:`InlinePool` runs its
    rounds on it and the experiments replay measured CPU times on it.
    """
    events: list[tuple[float, SlotKey]] = []
    dead: list[int] = []
    for w, slots in enumerate(durations):
        act = actions[w] if actions is not None else _NO_ACTION
        if act.crash:
            dead.append(w)
            continue
        clock = act.delay
        for q, dt in enumerate(slots):
            if dt is None:
                continue
            clock += dt
            events.append((clock, (w, q)))
    events.sort(key=lambda e: e[0])
    order: list[SlotKey] = []
    times: list[float] = []
    for at, key in events:
        if at > limit:
            return Timeline(order, times, None, dead, timed_out=True)
        order.append(key)
        times.append(at)
        if enough(order):
            return Timeline(order, times, at, dead)
    return Timeline(order, times, None, dead)


_NO_ACTION = Action()


class InlinePool(PoolBase):
    """Pool interface (see :mod:`sparsecoded.pools.base`) computed in this process.

    Parameters
    ----------
    n_workers : int
        Number of simulated workers.
    timeout : float
        A round whose decision would come later than this on the virtual clock
        raises :class:`~sparsecoded.errors.RoundTimeout`; ``inf`` means no limit.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> pool = InlinePool(2)
    >>> pool.place("job", [[sp.csr_array(np.eye(2))], [sp.csr_array(2 * np.eye(2))]])
    >>> r = pool.run("job", "matvec", np.ones(2), enough=lambda res: len(res) == 2)
    >>> r.results[(1, 0)].tolist()
    [2.0, 2.0]
    """

    def __init__(self, n_workers: int, *, timeout: float = 3600.0):
        if int(n_workers) < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.n_workers = int(n_workers)
        self.timeout = check_timeout(timeout)
        self._jobs: dict[str, PlacedJob] = {}

    def place(self, job: str, payloads: Sequence[Sequence[Any]]) -> None:
        self._check_open()
        self._jobs[job] = place_payloads(payloads, self.n_workers)

    def drop(self, job: str) -> None:
        self._jobs.pop(job, None)

    def close(self) -> None:
        self._jobs.clear()
        if self._closed_reason is None:
            self._closed_reason = "close() was called"

    def run(
        self,
        job: str,
        op: str,
        operand: np.ndarray | None,
        *,
        enough: Callable[[Mapping[SlotKey, Any]], bool],
        actions: Sequence[Action] | None = None,
        timeout: float | None = None,
    ) -> RoundResult:
        record, x, limit = self._start_round(job, op, operand, actions, timeout)
        payloads = record.payloads
        results: dict[SlotKey, Any] = {}
        seconds: dict[SlotKey, float] = {}
        durations: list[list[float | None]] = []
        for w, slots in enumerate(payloads):
            act = actions[w] if actions is not None else _NO_ACTION
            row: list[float | None] = []
            for q, payload in enumerate(slots if not act.crash else ()):
                t0 = time.perf_counter()
                results[(w, q)] = compute_placed(op, payload, x, 1)
                seconds[(w, q)] = time.perf_counter() - t0
                row.append(seconds[(w, q)])
            durations.append(row)

        got: dict[SlotKey, Any] = {}

        def arrived(order: Sequence[SlotKey]) -> bool:  # called once per arrival
            got[order[-1]] = results[order[-1]]
            return enough(got)

        line = virtual_clock(durations, actions, arrived, limit=limit)
        took = {key: seconds[key] for key in line.order}
        dead = line.dead
        if line.decided_at is not None:
            done = set(line.order)
            cancelled = sorted(
                w
                for w, slots in enumerate(payloads)
                if slots and w not in dead and any((w, q) not in done for q in range(len(slots)))
            )
            return RoundResult(
                got, line.order, took, cancelled, dead, line.decided_at, {"mode": "simulated"}
            )
        partial = None
        if not line.timed_out:
            at = line.times[-1] if line.times else 0.0
            partial = RoundResult(got, line.order, took, [], dead, at, {"mode": "simulated"})
        why = f"timed out after {limit:g} s" if line.timed_out else "every live worker answered"
        raise self._round_failed(
            job, why, order=line.order, n_results=len(got), dead=dead,
            timed_out=line.timed_out, partial=partial,
        )  # fmt: skip
