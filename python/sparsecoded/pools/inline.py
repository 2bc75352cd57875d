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

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import NotEnoughWorkers, PoolClosed
from ..stragglers import Action
from .base import RoundResult, SlotKey, check_round_args, check_timeout, compute

__all__ = ["InlinePool"]


class InlinePool:
    """Pool interface (see :mod:`sparsecoded.pools.base`) computed in this process.

    Parameters
    ----------
    n_workers : int
        Number of simulated workers.
    timeout : float
        A round whose decision would come later than this on the virtual clock
        raises :class:`~sparsecoded.errors.NotEnoughWorkers`; ``inf`` means no limit.

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
        self._jobs: dict[str, list[list[Any]]] = {}
        self._closed = False

    def __enter__(self) -> InlinePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosed("this InlinePool is closed")

    def place(self, job: str, payloads: Sequence[Sequence[Any]]) -> None:
        self._check_open()
        if len(payloads) != self.n_workers:
            raise ValueError(
                f"payloads has {len(payloads)} entries, expected one per worker ({self.n_workers})"
            )
        self._jobs[job] = [list(p) for p in payloads]

    def drop(self, job: str) -> None:
        self._jobs.pop(job, None)

    def close(self) -> None:
        self._jobs.clear()
        self._closed = True

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
        self._check_open()
        check_round_args(job, self._jobs, op, actions, self.n_workers)
        limit = self.timeout if timeout is None else check_timeout(timeout)
        events: list[tuple[float, SlotKey, Any, float]] = []
        dead = []
        for w, payloads in enumerate(self._jobs[job]):
            act = actions[w] if actions is not None else Action()
            if act.crash:
                dead.append(w)
                continue
            clock = act.delay
            for q, payload in enumerate(payloads):
                t0 = time.perf_counter()
                result = compute(op, payload, operand)
                dt = time.perf_counter() - t0
                clock += dt
                events.append((clock, (w, q), result, dt))
        events.sort(key=lambda e: e[0])
        results: dict[SlotKey, Any] = {}
        order: list[SlotKey] = []
        seconds: dict[SlotKey, float] = {}
        for at, key, result, dt in events:
            if at > limit:
                break
            results[key] = result
            order.append(key)
            seconds[key] = dt
            if enough(results):
                done = {w for w, _ in order}
                busy = [w for w, p in enumerate(self._jobs[job]) if p and w not in dead]
                cancelled = sorted(
                    w
                    for w in busy
                    if w not in done
                    or any((w, q) not in results for q in range(len(self._jobs[job][w])))
                )
                return RoundResult(
                    results, order, seconds, cancelled, dead, at, {"mode": "simulated"}
                )
        answered = sorted({w for w, _ in order})
        timed_out = bool(events) and events[-1][0] > limit
        why = f"timed out after {limit:g} s" if timed_out else "every live worker answered"
        partial = None
        if not timed_out:
            at = events[-1][0] if events else 0.0
            partial = RoundResult(results, order, seconds, [], dead, at, {"mode": "simulated"})
        raise NotEnoughWorkers(
            f"round cannot be decoded: {why}; dead workers {dead}, answered {answered}",
            dead=dead,
            answered=answered,
            partial=partial,
        )
