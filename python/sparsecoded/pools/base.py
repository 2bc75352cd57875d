"""What every worker pool offers, and the work a worker does.

A pool holds ``n_workers`` persistent workers.  A coded job *places* its
payloads once (``payloads[w]`` is the list of coded blocks worker ``w``
stores: one for a homogeneous code, several for a heterogeneous device), then
runs *rounds*.  In a round every live worker computes ``compute(op, payload,
operand)`` for each of its payloads, one after another, and sends each result
as soon as it is done.  The master takes results in arrival order until the
job's ``enough`` predicate says it can decode, then cancels the rest.

Backends: :class:`sparsecoded.LocalPool` (processes + shared memory) and
:class:`sparsecoded.DaskPool` (any dask.distributed cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..stragglers import Action

__all__ = ["OPS", "Pool", "RoundResult", "SlotKey", "check_round_args", "check_timeout", "compute"]

#: (worker, slot): slot is the index of the payload in the worker's list
SlotKey = tuple[int, int]

#: the operations a worker knows
OPS = ("matvec", "matmat")


def compute(op: str, payload: Any, operand: Any) -> Any:
    """The work of one worker on one payload.

    ``"matvec"``: ``payload`` is a CSR coded block, ``operand`` a dense vector
    or matrix; returns ``payload @ operand`` (dense).  ``"matmat"``: ``payload``
    is a pair ``(A_coded, B_coded)``, ``operand`` is ignored; returns
    ``A_coded @ B_coded`` (CSR when sparse, dense when that is cheaper).
    """
    from .. import kernels  # local: keeps worker start-up light for pools that never compute

    if op == "matvec":
        return kernels.matvec(payload, operand, n_threads=1)
    if op == "matmat":
        a, b = payload
        return kernels.matmat(a, b, n_threads=1)
    raise ValueError(f"unknown op {op!r}, expected one of {OPS}")


def check_round_args(
    job: str, placed: Mapping[str, Any], op: str, actions: Sequence[Action] | None, n_workers: int
) -> None:
    """The checks every backend's ``run`` makes before a round, with one wording."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}, expected one of {OPS}")
    if job not in placed:
        raise ValueError(f"job {job!r} is not placed; placed jobs: {sorted(map(repr, placed))}")
    if actions is not None and len(actions) != n_workers:
        raise ValueError(f"actions has {len(actions)} entries, expected n_workers = {n_workers}")


def check_timeout(timeout: Any, name: str = "timeout") -> float:
    """A limit in seconds, checked the same way by every backend: a number > 0.

    ``float("inf")`` means no limit.  NaN, zero, negative numbers, booleans and
    anything that is not a real number raise :class:`ValueError`.
    """
    if isinstance(timeout, (bool, np.bool_)) or not isinstance(
        timeout, (int, float, np.integer, np.floating)
    ):
        raise ValueError(
            f"{name} must be a number of seconds > 0 (inf means no limit), "
            f"got {type(timeout).__name__} {timeout!r}"
        )
    value = float(timeout)
    if not value > 0:  # also catches nan
        raise ValueError(f"{name} must be > 0 seconds (inf means no limit), got {timeout!r}")
    return value


@dataclass
class RoundResult:
    """What a round returned, for the job's report."""

    results: dict[SlotKey, Any]
    #: keys in arrival order
    order: list[SlotKey]
    #: seconds each answered payload took to compute on its worker (delays excluded)
    compute_seconds: dict[SlotKey, float]
    #: workers still busy when the round was decided (cancelled)
    cancelled: list[int]
    #: workers that died during the round (respawned for the next one)
    dead: list[int]
    #: wall-clock seconds from broadcast to decision
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answered(self) -> list[int]:
        """Workers that sent at least one result, in order of their first result."""
        seen: dict[int, None] = {}
        for w, _ in self.order:
            seen.setdefault(w, None)
        return list(seen)


class Pool(Protocol):
    """The interface every backend implements (structural: no base class needed)."""

    n_workers: int

    def place(self, job: str, payloads: Sequence[Sequence[Any]]) -> None:
        """Store ``payloads[w]`` on worker ``w`` under the key ``job`` (replacing any before)."""

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
        """One round.

        ``enough(results)`` is called after each arrival; when it returns True
        the round ends and the other workers are cancelled.  ``actions[w]`` is
        worker ``w``'s injected straggler action.  Raises
        :class:`~sparsecoded.errors.NotEnoughWorkers` when every worker has
        answered or died and ``enough`` is still False, or after ``timeout``
        seconds.
        """

    def drop(self, job: str) -> None:
        """Free what ``job`` placed."""

    def close(self) -> None:
        """Stop every worker and free every resource.  Idempotent."""
