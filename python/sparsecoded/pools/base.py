"""What every worker pool offers, the checks they share, and the work a worker does.

A pool holds ``n_workers`` persistent workers.  A coded job *places* its
payloads once (``payloads[w]`` is the list of coded blocks worker ``w``
stores: one for a homogeneous code, several for a heterogeneous device), then
runs *rounds*.  In a round every live worker computes ``op`` on each of its
payloads, one after another, and sends each result as soon as it is done.
The master takes results in arrival order until the job's ``enough``
predicate says it can decode, then cancels the rest.

Every backend checks the same way, in :class:`PoolBase`: :func:`place_payloads`
validates the payloads once, at ``place()`` (:func:`sparsecoded.kernels._placed`:
CSR structure, dtypes, the pair shapes of ``"matmat"``) and records what a
round needs to know; :func:`check_operand` then checks a round's operand in
O(1) against that record (``ndim``, length against the payloads' column
count, dtype).  Workers run the placed payloads with :func:`compute_placed`,
which calls the kernels' unchecked entries: nothing is validated again per round.

Backends: :class:`~sparsecoded.pools.inline.InlinePool` (in process, virtual
clock), :class:`sparsecoded.LocalPool` (processes + shared memory) and
:class:`sparsecoded.DaskPool` (any dask.distributed cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import NotEnoughWorkers, PoolClosed, RoundTimeout
from ..stragglers import Action

__all__ = [
    "OPS",
    "PlacedJob",
    "Pool",
    "PoolBase",
    "RoundResult",
    "SlotKey",
    "answered",
    "check_operand",
    "check_round_args",
    "check_threads",
    "check_timeout",
    "compute",
    "compute_placed",
    "place_payloads",
]

#: (worker, slot): slot is the index of the payload in the worker's list
SlotKey = tuple[int, int]

#: the operations a worker knows
OPS = ("matvec", "matmat")

_OPERAND_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def compute(op: str, payload: Any, operand: Any, n_threads: int = 1) -> Any:
    """The work of one worker on one payload, through the public, checked kernels.

    ``"matvec"``: ``payload`` is a CSR coded block, ``operand`` a dense vector
    or matrix; returns ``payload @ operand`` (dense).  ``"matmat"``: ``payload``
    is a pair ``(A_coded, B_coded)``, ``operand`` is ignored; returns
    ``A_coded @ B_coded`` (CSR when sparse, dense when that is cheaper).
    Pools run placed payloads with :func:`compute_placed` instead.
    """
    from .. import kernels  # local: keeps worker start-up light for pools that never compute

    if op == "matvec":
        return kernels.matvec(payload, operand, n_threads=n_threads)
    if op == "matmat":
        a, b = payload
        return kernels.matmat(a, b, n_threads=n_threads)
    raise ValueError(f"unknown op {op!r}, expected one of {OPS}")


def compute_placed(op: str, payload: Any, operand: Any, n_threads: int) -> Any:
    """:func:`compute` for a payload from :func:`place_payloads` and an operand that
    passed :func:`check_operand`: the kernels' unchecked entries, no re-validation."""
    from .. import kernels

    if op == "matvec":
        return kernels._matvec_placed(payload, operand, n_threads)
    return kernels._matmat_placed(payload, n_threads)


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


def check_threads(threads_per_worker: Any) -> int:
    """``threads_per_worker``: the OpenMP threads of each kernel call on a worker, an int >= 1."""
    from .._validation import MAX_THREADS

    if isinstance(threads_per_worker, (bool, np.bool_)) or not isinstance(
        threads_per_worker, (int, np.integer)
    ):
        raise ValueError(
            f"threads_per_worker must be an int >= 1, got "
            f"{type(threads_per_worker).__name__} {threads_per_worker!r}"
        )
    if not 1 <= threads_per_worker <= MAX_THREADS:
        raise ValueError(
            f"threads_per_worker must be >= 1 and <= {MAX_THREADS}, got {threads_per_worker}"
        )
    return int(threads_per_worker)


# --------------------------------------------------------------------------- payloads


@dataclass
class PlacedJob:
    """A job's payloads as :func:`place_payloads` checked them, and what a round checks."""

    #: per worker, per slot: CSR (a matrix) or a pair (A, B), see kernels._placed
    payloads: list[list[Any]]
    #: column count -> the first slot with it, over the matrix payloads
    n_cols: dict[int, SlotKey] = field(default_factory=dict)
    #: value dtype of the matrix payloads (float64 if any is)
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float64))
    #: the first matrix payload and the first pair payload, if any
    first_matrix: SlotKey | None = None
    first_pair: SlotKey | None = None


def place_payloads(payloads: Sequence[Sequence[Any]], n_workers: int) -> PlacedJob:
    """THE payload check of every backend's ``place()``.

    ``payloads`` is a list of ``n_workers`` lists of blocks; a block is a
    matrix (scipy sparse, any format, or a 2-D numpy array: converted to CSR
    once) or a pair ``(A_coded, B_coded)`` for ``"matmat"``.  Each is checked
    in full once (:func:`sparsecoded.kernels._placed`); errors name the block
    as ``payloads[w][s]``.
    """
    from .. import kernels

    if isinstance(payloads, (str, bytes)) or not isinstance(payloads, Sequence):
        raise TypeError(
            f"payloads must be a list of n_workers lists, got {type(payloads).__name__}"
        )
    if len(payloads) != n_workers:
        raise ValueError(f"payloads has {len(payloads)} entries, expected n_workers = {n_workers}")
    job = PlacedJob([])
    dtypes = set()
    for w, blocks in enumerate(payloads):
        if not isinstance(blocks, (list, tuple)):
            raise TypeError(
                f"payloads[{w}] is a {type(blocks).__name__}, expected a list of blocks"
            )
        placed = []
        for s, block in enumerate(blocks):
            p = kernels._placed(block, f"payloads[{w}][{s}]")
            if isinstance(p, kernels.CSR):
                job.n_cols.setdefault(p.shape[1], (w, s))
                dtypes.add(p.data.dtype)
                if job.first_matrix is None:
                    job.first_matrix = (w, s)
            elif job.first_pair is None:
                job.first_pair = (w, s)
            placed.append(p)
        job.payloads.append(placed)
    if dtypes == {np.dtype(np.float32)}:
        job.dtype = np.dtype(np.float32)
    return job


def check_operand(job: PlacedJob, op: str, operand: Any) -> np.ndarray | None:
    """THE operand check of every backend's ``run()``: O(1), against the placed payloads.

    ``"matvec"``: a float32/float64 vector or matrix whose length (rows) is
    the payloads' column count, returned as an ndarray; every payload must be
    a matrix.  ``"matmat"``: every payload must be a pair; the operand is
    ignored (None is returned).
    """
    if op == "matmat":
        if job.first_matrix is not None:
            w, s = job.first_matrix
            raise ValueError(
                f"op 'matmat' needs a pair (A_coded, B_coded) in payload ({w}, {s}), found a matrix"
            )
        return None
    if job.first_pair is not None:
        w, s = job.first_pair
        raise ValueError(f"op 'matvec' needs a matrix in payload ({w}, {s}), found a pair")
    if operand is None:
        raise ValueError("op 'matvec' needs an operand, got None")
    x = operand if type(operand) is np.ndarray else np.asarray(operand)
    if x.dtype not in _OPERAND_DTYPES:
        raise ValueError(f"operand has dtype {x.dtype}, expected float32 or float64")
    if x.ndim not in (1, 2):
        raise ValueError(f"operand has {x.ndim} dimensions, expected 1 (vector) or 2 (matrix)")
    cols = job.n_cols
    if len(cols) > 1 or (cols and x.shape[0] not in cols):
        n, (w, s) = next((n, k) for n, k in cols.items() if n != x.shape[0])
        raise ValueError(
            f"operand has {x.shape[0]} rows, expected {n} (the columns of payload ({w}, {s}))"
        )
    return x


# --------------------------------------------------------------------------- rounds


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
        return answered(self.order)


def answered(order: Sequence[SlotKey]) -> list[int]:
    """Workers in ``order`` (slot keys in arrival order), in order of their first result."""
    return list(dict.fromkeys(w for w, _ in order))


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
        answered or died and ``enough`` is still False, and its subclass
        :class:`~sparsecoded.errors.RoundTimeout` after ``timeout`` seconds.
        """

    def drop(self, job: str) -> None:
        """Free what ``job`` placed."""

    def close(self) -> None:
        """Stop every worker and free every resource.  Idempotent."""


class PoolBase:
    """What the three backends share: the open/closed state, the context manager,
    the prologue of ``run`` and the round's failure.

    A subclass sets ``n_workers``, ``timeout`` and ``_jobs`` (job key ->
    :class:`PlacedJob` or a subclass of it), and sets ``_closed_reason`` (a
    sentence) when it closes.
    """

    n_workers: int
    timeout: float
    _jobs: Mapping[Any, PlacedJob]  # a subclass's own job records (PlacedJob subclasses)
    _closed_reason: str | None = None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or the pool closed itself)."""
        return self._closed_reason is not None

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise PoolClosed(f"this {type(self).__name__} is closed ({self._closed_reason})")

    def __enter__(self):  # noqa: ANN204 - the subclass
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def _start_round(
        self,
        job: str,
        op: str,
        operand: Any,
        actions: Sequence[Action] | None,
        timeout: float | None,
    ) -> tuple[Any, np.ndarray | None, float]:
        """The prologue of ``run``: (the placed job, the checked operand, the time limit)."""
        self._check_open()
        check_round_args(job, self._jobs, op, actions, self.n_workers)
        limit = self.timeout if timeout is None else check_timeout(timeout)
        record = self._jobs[job]
        return record, check_operand(record, op, operand), limit

    def _round_failed(
        self,
        job: str,
        why: str,
        *,
        order: Sequence[SlotKey],
        n_results: int,
        dead: Collection[int],
        timed_out: bool,
        partial: RoundResult | None = None,
        more: str = "",
    ) -> NotEnoughWorkers:
        """The exception of a round that cannot be decoded, worded alike by every backend.

        The message names no round number: the job raising it names its own.
        """
        who = answered(order)
        error = RoundTimeout if timed_out else NotEnoughWorkers
        return error(
            f"job {job!r} cannot be decoded: {why}; {len(who)} of {self.n_workers} workers "
            f"answered ({n_results} results); dead workers: {sorted(dead) or 'none'}{more}",
            dead=dead,
            answered=who,
            partial=partial,
        )
