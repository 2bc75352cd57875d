"""Coded jobs: encode once, place the coded blocks, answer from the first responders.

:class:`CodedMatVec` answers ``A @ x`` and ``A.T @ y`` for many operands and
is a :class:`scipy.sparse.linalg.LinearOperator`, so scipy's solvers
(``cg``, ``gmres``, ``minres``, ``lsqr``, ``lsmr``, ``eigsh``, ``svds``) drive
it directly; :class:`CodedMatMat` answers ``A @ B``.  Both encode with the
C++ kernel, place each worker's coded blocks once on a pool
(:class:`~sparsecoded.LocalPool`, :class:`~sparsecoded.DaskPool` or
:class:`~sparsecoded.pools.inline.InlinePool`), and in each round take results
in arrival order until the responders' system can be decoded with a condition
number below ``max_condition`` (:meth:`sparsecoded.decode.Decoder.enough`);
the other workers are cancelled.  ``report`` describes the last call,
``history`` the last rounds.  See docs/theory.md section 7.

Rounds on one pool are serialised (a pool runs one round at a time); rounds
submitted from several threads, or several in flight from one
(:meth:`CodedMatVec.submit`), each get their own exact answer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from . import kernels
from .decode import Decoder
from .design import MMCode, MVCode
from .pools.base import Pool
from .rounds import (
    DEFAULT_HISTORY,
    JobReport,
    _as_applied,
    _as_matrix,
    _check_pool,
    _CodedJob,
    _owner,
    _RowJob,
)
from .stragglers import StragglerModel

__all__ = ["CodedMatMat", "CodedMatVec", "JobReport"]


def _operand(x: Any, length: int, dtype: np.dtype, name: str, expected: str) -> np.ndarray:
    """The one check of a round's operand: dense, 1-D or 2-D, real, finite, the right length.

    Returns it C-contiguous in the job's working precision.
    """
    if sp.issparse(x):
        raise ValueError(
            f"{name} must be a dense vector or matrix, found a scipy sparse {x.format} matrix; "
            "use CodedMatMat for sparse operands"
        )
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be a vector or a 2-D matrix, got {x.ndim}-D (shape {x.shape})"
        )
    if x.shape[0] != length:
        what = f"{name} has length" if x.ndim == 1 else f"{name.upper()} has"
        rows = "" if x.ndim == 1 else " rows"
        raise ValueError(f"{what} {x.shape[0]}{rows}, expected {expected} = {length}")
    if np.iscomplexobj(x):
        raise ValueError(
            f"{name} must be real, got dtype {x.dtype}: the coded job works in real "
            f"{dtype}; apply it to the real and imaginary parts separately"
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    operand = np.ascontiguousarray(x, dtype=dtype)
    finite = np.isfinite(operand)
    if not finite.all():
        # a coded block mixes several blocks: a NaN or inf would spread to
        # rows of the answer that A @ x keeps finite
        bad = np.argwhere(~finite)[0]
        where = int(bad[0]) if x.ndim == 1 else tuple(int(i) for i in bad)
        raise ValueError(
            f"{name} must be finite, found {operand[tuple(bad)]} at index {where} "
            f"(in {dtype}); coded decoding would spread it to other rows"
        )
    return operand


class _Rounds(LinearOperator):
    """The LinearOperator face shared by :class:`CodedMatVec` and its transpose."""

    def _job(self) -> _RowJob:  # pragma: no cover - abstract
        raise NotImplementedError

    _xname = "x"
    _expected = "A.shape[1]"

    def _check(self, x: Any) -> np.ndarray:
        return _operand(x, self.shape[1], self.dtype, self._xname, self._expected)

    def submit(self, x: Any, *, timeout: float | None = None) -> Future:
        """Start a round for ``x`` without waiting: a :class:`concurrent.futures.Future`.

        ``x`` is checked now (a bad operand raises here); the round runs on
        the operator's round thread, after the rounds submitted before it.
        ``future.result()`` is the answer or raises the round's error
        (:class:`~sparsecoded.errors.NotEnoughWorkers`,
        :class:`~sparsecoded.errors.RoundTimeout`).
        """
        operand = self._check(x)
        return self._executor().submit(self._job().apply, operand, timeout)

    def _executor(self) -> ThreadPoolExecutor:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, x: Any, *, timeout: float | None = None) -> np.ndarray:
        """The product with ``x`` (length/rows ``shape[1]``), with a per-call ``timeout``."""
        return self._job().apply(self._check(x), timeout)

    # scipy's entry points: the shapes scipy promises, our checks and messages
    def matvec(self, x: Any) -> np.ndarray:
        if sp.issparse(x):
            return self.apply(x)  # refused, with the reason
        x_arr = np.asarray(x)
        column = x_arr.ndim == 2 and x_arr.shape[1] == 1
        y = self.apply(x_arr[:, 0] if column else x_arr)
        if y.ndim != 1:
            raise ValueError(f"matvec expects a vector, got shape {np.shape(x)}; use matmat")
        return y[:, None] if column else y

    def matmat(self, X: Any) -> np.ndarray:
        if sp.issparse(X):
            return self.apply(X)  # refused, with the reason
        X_arr = np.asarray(X)
        if X_arr.ndim != 2:
            raise ValueError(f"matmat expects a 2-D array, got shape {np.shape(X)}")
        return self.apply(X_arr)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self.apply(np.ravel(x))

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self.apply(X)

    def dot(self, x: Any) -> Any:
        if isinstance(x, LinearOperator) or np.isscalar(x):
            return super().dot(x)
        if sp.issparse(x):
            return self.apply(x)  # refused, with the reason
        x_arr = np.asarray(x)
        if x_arr.ndim == 2 and x_arr.shape[1] != 1:
            return self.matmat(x_arr)
        return self.matvec(x_arr)

    def __matmul__(self, x: Any) -> Any:
        if np.isscalar(x):
            raise ValueError("Scalar operands are not allowed, use '*' instead")
        return self.dot(x)

    def __call__(self, x: Any) -> Any:
        return self.dot(x)

    @property
    def report(self) -> JobReport | None:
        """What this direction's last round did."""
        return self._job().report

    @property
    def history(self) -> deque[JobReport]:
        """This direction's last rounds, oldest first (bounded, see ``history=``)."""
        return self._job().history


class CodedMatVec(_Rounds):
    """``A @ x`` and ``A.T @ y`` from the first responders of a coded pool.

    A :class:`scipy.sparse.linalg.LinearOperator`: ``op @ x``, ``op.matvec``,
    ``op.matmat``, ``op.rmatvec``, ``op.rmatmat``, ``op.T``, ``op.H``,
    ``op.adjoint()``, composition and scipy's iterative solvers all work.

    The transpose products run on the workers too: on the first transpose
    call each worker gets a second coded block built from ``A``'s ``k``
    *column* blocks with the same code (``transpose_code=`` for another), so
    it stores at most 2/k of ``A``, and ``A.T @ y`` tolerates the same
    stragglers as ``A @ x``.

    Parameters
    ----------
    A : sparse or dense (m, c)
        The matrix; converted to CSR once.  Must be real and finite.
    code : MVCode
        Its encoding's ``k`` row blocks must fit in ``A`` (``k <= m``).
    pool : Pool
        LocalPool, DaskPool, InlinePool...: at least ``code.n_workers``
        workers; worker ``w`` computes the encoding rows whose ``owner`` is ``w``.
    stragglers : StragglerModel, optional
        Injected on the worker side, per round (round index = call number of
        that direction).
    max_condition : float, optional
        Largest condition number of the responders' system a round accepts
        before it waits for one more worker.  Default by working precision:
        :data:`sparsecoded.decode.DEFAULT_MAX_CONDITION` (1e10) for float64,
        :data:`~sparsecoded.decode.DEFAULT_MAX_CONDITION_FLOAT32` (1e5) for
        float32.
    timeout : float, optional
        Per-round limit, default the pool's; each call may pass its own.
    dtype : float32 or float64, optional
        The working precision of the workers and of the answers.  Default:
        float32 when ``A`` is float32, else float64.  Operands are cast to
        it, so a float32 job answers in float32 even for a float64 ``x``
        (unlike scipy, which promotes): pass ``dtype=np.float64`` for that.
    transpose_code : MVCode, optional
        The code for ``A``'s column blocks (default ``code``).
    history : int
        How many rounds' :class:`JobReport` to keep in ``history``.
    on_round : callable, optional
        Called with each round's :class:`JobReport` (both directions).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparsecoded import design_mv
    >>> from sparsecoded.pools.inline import InlinePool
    >>> A = sp.random_array((100, 50), density=0.05, format="csr", rng=0)
    >>> with InlinePool(6) as pool:
    ...     op = CodedMatVec(A, design_mv(6, 4, seed=0), pool)
    ...     bool(np.allclose(op @ np.ones(50), A @ np.ones(50)))
    ...     bool(np.allclose(op.T @ np.ones(100), A.T @ np.ones(100)))
    True
    True
    """

    def __init__(
        self,
        A: Any,
        code: MVCode,
        pool: Pool,
        *,
        stragglers: StragglerModel | None = None,
        max_condition: float | None = None,
        timeout: float | None = None,
        dtype: Any = None,
        transpose_code: MVCode | None = None,
        history: int = DEFAULT_HISTORY,
        on_round: Callable[[JobReport], None] | None = None,
    ):
        A = _as_matrix(A, "A")
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype not in (np.float32, np.float64):
                raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"history must be an integer >= 0, got {history!r}")
        self._A = A
        self._kw = dict(
            dtype=dtype,
            stragglers=stragglers,
            max_condition=max_condition,
            timeout=timeout,
            history=history,
            on_round=on_round,
        )
        self._forward = _RowJob(A, code, pool, direction="matvec", **self._kw)
        self._transpose_code = code if transpose_code is None else transpose_code
        self._backward: _RowJob | None = None
        self._guard = threading.Lock()
        self._closing = False  # set first by close(): no new round thread, no transpose job
        self._pool_executor: ThreadPoolExecutor | None = None
        super().__init__(self._forward.dtype, A.shape)

    # -- the two jobs --------------------------------------------------

    def _job(self) -> _RowJob:
        return self._forward

    def _transposed_job(self) -> _RowJob:
        """The job on ``A.T``, placed on the first transpose call and kept."""
        with self._guard:
            if self._backward is None:
                if self._closing or self._forward._closed:
                    raise ValueError("this coded job is closed")
                At = sp.csr_array(self._A.T)
                self._backward = _RowJob(
                    At,
                    self._transpose_code,
                    self._forward.pool,
                    direction="rmatvec",
                    name="A.T",
                    **self._kw,
                )
            return self._backward

    def _executor(self) -> ThreadPoolExecutor:
        with self._guard:
            if self._pool_executor is None:
                if self._closing or self._forward._closed:
                    raise ValueError("this coded job is closed")
                self._pool_executor = ThreadPoolExecutor(1, thread_name_prefix="sparsecoded-round")
            return self._pool_executor

    # -- transposes ----------------------------------------------------

    def _transpose(self) -> _CodedTranspose:
        return _CodedTranspose(self)

    _adjoint = _transpose  # real: the adjoint is the transpose

    def rmatvec(self, y: Any) -> np.ndarray:
        return self.T.matvec(y)

    def rmatmat(self, Y: Any) -> np.ndarray:
        return self.T.matmat(Y)

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return self.T.apply(np.ravel(y))

    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        return self.T.apply(Y)

    # -- what the job was built from ------------------------------------

    @property
    def code(self) -> MVCode:
        return self._forward.code

    @property
    def pool(self) -> Pool:
        return self._forward.pool

    @property
    def stragglers(self) -> StragglerModel | None:
        """The injected straggler model of both directions; assign to change it between rounds."""
        return self._forward.stragglers

    @stragglers.setter
    def stragglers(self, model: StragglerModel | None) -> None:
        with self._guard:
            self._kw["stragglers"] = model
            for job in (self._forward, self._backward):
                if job is not None:
                    job.stragglers = model

    @property
    def timeout(self) -> float | None:
        return self._forward.timeout

    @property
    def k(self) -> int:
        return self._forward.k

    @property
    def block_rows(self) -> int:
        return self._forward.block_rows

    @property
    def _decoder(self) -> Decoder:
        return self._forward._decoder

    def close(self) -> None:
        """Free the blocks this job placed (both directions); the pool stays open."""
        with self._guard:
            self._closing = True
            executor, self._pool_executor = self._pool_executor, None
        if executor is not None:
            executor.shutdown(wait=True)  # rounds in flight finish first
        self._forward.close()
        if self._backward is not None:
            self._backward.close()

    def __enter__(self) -> CodedMatVec:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        m, c = self.shape
        code = self.code
        return (
            f"<CodedMatVec {m}x{c} {self.dtype}: {code.scheme} code n={code.n_workers} "
            f"k={code.k} w={code.weight} on {type(self.pool).__name__}, "
            f"transpose {'placed' if self._backward is not None else 'not placed'}>"
        )


class _CodedTranspose(_Rounds):
    """``A.T`` of a :class:`CodedMatVec`: its products run on the workers' column blocks."""

    _xname = "y"
    _expected = "A.shape[0]"

    def __init__(self, parent: CodedMatVec):
        self._parent = parent
        super().__init__(parent.dtype, (parent.shape[1], parent.shape[0]))

    def _job(self) -> _RowJob:
        return self._parent._transposed_job()

    def _executor(self) -> ThreadPoolExecutor:
        return self._parent._executor()

    def _transpose(self) -> CodedMatVec:
        return self._parent

    _adjoint = _transpose

    def rmatvec(self, x: Any) -> np.ndarray:
        return self._parent.matvec(x)

    def rmatmat(self, X: Any) -> np.ndarray:
        return self._parent.matmat(X)

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._parent.apply(np.ravel(x))

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self._parent.apply(X)

    @property
    def report(self) -> JobReport | None:
        """What the last transpose round did (None before the first)."""
        job = self._parent._backward
        return None if job is None else job.report

    @property
    def history(self) -> deque[JobReport]:
        job = self._parent._backward
        return deque() if job is None else job.history

    def __repr__(self) -> str:
        return f"<transpose of {self._parent!r}>"


def _row_error_scale(P: sp.csr_array) -> np.ndarray:
    """``nnz(P[i]) ||P[i, :]||``: with :func:`_col_error_scale` of Q it bounds
    ``|fl(P @ Q) - P @ Q|[i, j] <= eps * row[i] * col[j]`` (about).

    Entry (i, j) sums at most nnz(P[i]) products, so its rounding is at most
    ``nnz(P[i]) eps sum_k |P_ik| |Q_kj| <= nnz(P[i]) eps ||P[i, :]|| ||Q[:, j]||``.
    """
    P = sp.csr_array(P)
    row = np.sqrt(np.asarray(P.multiply(P).sum(axis=1), dtype=np.float64)).ravel()
    return row * np.diff(P.indptr)


def _col_error_scale(Q: sp.csr_array) -> np.ndarray:
    Q = sp.csc_array(Q)
    return np.sqrt(np.asarray(Q.multiply(Q).sum(axis=0), dtype=np.float64)).ravel()


def _slot_index(ids: np.ndarray | None, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct slot, each row's slot number)."""
    ids = np.arange(n_rows) if ids is None else np.asarray(ids)
    _, first, which = np.unique(ids, return_index=True, return_inverse=True)
    return first, which.ravel()


class CodedMatMat(_CodedJob):
    """``A @ B`` from the first responders of a coded pool (docs/theory.md section 5).

    ``A`` is split by rows into ``code.k_a`` blocks, ``B`` by columns into
    ``code.k_b``; worker ``i`` computes ``Ã_i @ B̃_i``.  :meth:`compute`
    returns a ``csr_array``, or a dense array when ``A @ B`` is dense (at
    least :data:`sparsecoded.kernels.DENSE_OUTPUT_DENSITY` of its entries
    nonzero).  Entries that are zero to within the decode's rounding bound
    (cancellation leftovers of the coded products) are dropped, so the result
    stores about as many entries as scipy's product.

    On a finer partition (several slots per device) the products of one
    device that share an A-slot run as one product, ``A_slot @ [B_1 | B_2
    | ...]``, which walks the A-slot once instead of once per B-slot (at
    n = 24, 4 x 5: 37 ms a device instead of 101 ms); its result then
    counts when the whole group is done.  ``group=False`` sends every
    product on its own, so a slow device's finished products count
    separately (partial work), at that cost.
    """

    op = "matmat"

    def __init__(
        self,
        A: Any,
        B: Any,
        code: MMCode,
        pool: Pool,
        *,
        stragglers: StragglerModel | None = None,
        max_condition: float | None = None,
        timeout: float | None = None,
        history: int = DEFAULT_HISTORY,
        on_round: Callable[[JobReport], None] | None = None,
        group: bool = True,
    ):
        A = _as_matrix(A, "A")
        B = _as_matrix(B, "B")
        if B.shape[0] != A.shape[1]:
            raise ValueError(f"B has {B.shape[0]} rows, expected A.shape[1] = {A.shape[1]}")
        Ea = sp.csr_array(code.encoding_a)
        Eb = sp.csr_array(code.encoding_b)
        if Ea.shape[0] != Eb.shape[0]:
            raise ValueError(f"encoding_a has {Ea.shape[0]} rows but encoding_b has {Eb.shape[0]}")
        n_rows, k_a = Ea.shape
        k_b = Eb.shape[1]
        if k_a > A.shape[0]:
            raise ValueError(
                f"the code splits A into k_a = {k_a} row blocks, but A has only {A.shape[0]} rows"
            )
        if k_b > B.shape[1]:
            raise ValueError(
                f"the code splits B into k_b = {k_b} column blocks, "
                f"but B has only {B.shape[1]} columns"
            )
        _check_pool(pool, int(getattr(code, "n_workers", n_rows)))
        self.shape = (A.shape[0], B.shape[1])
        self.k_a, self.k_b = k_a, k_b
        # worker i's row of the system in the unknowns C_pq (index p * k_b + q)
        kron = sp.csr_array(sp.vstack([sp.kron(Ea[[i]], Eb[[i]]) for i in range(n_rows)]))
        owner = _owner(code, n_rows)
        super().__init__(
            code,
            pool,
            kron,
            owner,
            stragglers,
            max_condition,
            timeout,
            history=history,
            on_round=on_round,
        )
        # each distinct coded sub-block (slot) is encoded once: on a finer
        # partition a device multiplies each of its A-slots with each B-slot,
        # so rows share factors (and the pools store a shared factor once)
        first_a, slot_a = _slot_index(getattr(code, "slot_a", None), n_rows)
        first_b, slot_b = _slot_index(getattr(code, "slot_b", None), n_rows)
        t0 = time.perf_counter()
        coded_a = kernels.encode_row_blocks(A, sp.csr_array(Ea[first_a]))
        coded_bt = kernels.encode_row_blocks(sp.csr_array(B.T), sp.csr_array(Eb[first_b]))
        coded_b = [sp.csr_array(bt.T) for bt in coded_bt]
        encode_seconds = time.perf_counter() - t0
        blocks_a = [coded_a[slot_a[r]] for r in range(n_rows)]
        blocks_b = [coded_b[slot_b[r]] for r in range(n_rows)]
        da, db = blocks_a[0].dtype, blocks_b[0].dtype
        applied = sp.csr_array(
            sp.vstack(
                [sp.kron(_as_applied(Ea[[i]], da), _as_applied(Eb[[i]], db)) for i in range(n_rows)]
            )
        )
        working = np.float32 if np.float32 in (da, db) else np.float64
        self._set_precision(np.dtype(working), applied)
        self.block_shape = (blocks_a[0].shape[0], blocks_b[0].shape[1])
        wa, wb = np.diff(Ea.indptr), np.diff(Eb.indptr)
        live = [r for r in range(n_rows) if wa[r] > 0 and wb[r] > 0]
        # what each worker's product may carry in rounding, for the decode's
        # drop of cancellation leftovers (decode.DECODE_DROP_ROUNDING)
        rows_err = [_row_error_scale(P) for P in coded_a]
        cols_err = [_col_error_scale(Q) for Q in coded_b]
        self._term_errors = {r: (rows_err[slot_a[r]], cols_err[slot_b[r]]) for r in live}
        # the rows of one device that share an A-slot are one product with their
        # B-slots side by side: one pass over the A-slot instead of one per row
        # (a finer-partition device at n = 24, 4 x 5 multiplies 1 A-slot by 12 B-slots)
        groups: dict[tuple[int, int], list[int]] = {}
        for r in live:
            key = (int(owner[r]), int(slot_a[r]) if group else -1 - r)
            groups.setdefault(key, []).append(r)
        payloads: list[tuple[tuple[int, ...], Any]] = []
        for _, rows in sorted(groups.items()):
            a = slot_a[rows[0]]
            if len(rows) == 1:
                payloads.append(((rows[0],), (coded_a[a], coded_b[slot_b[rows[0]]])))
            else:
                wide = sp.csr_array(sp.hstack([coded_b[slot_b[r]] for r in rows], format="csr"))
                payloads.append((tuple(rows), (coded_a[a], wide)))
        self._place(payloads, encode_seconds)

    def _split(self, rows: tuple[int, ...], result: Any) -> list[Any]:
        """A grouped product ``A_slot @ [B_1 | B_2 | ...]`` cut into its rows' products."""
        width = self.block_shape[1]
        if sp.issparse(result):
            wide = sp.csc_array(result)  # column slices of CSC are cheap
            return [sp.csr_array(wide[:, i * width : (i + 1) * width]) for i in range(len(rows))]
        dense = np.asarray(result)
        return [
            np.ascontiguousarray(dense[:, i * width : (i + 1) * width]) for i in range(len(rows))
        ]

    def compute(self, *, timeout: float | None = None) -> sp.csr_array | np.ndarray:
        """Run one round and return ``A @ B``."""
        with self._lock:
            return self._compute(timeout)

    def _compute(self, timeout: float | None) -> sp.csr_array | np.ndarray:
        rr, plan, by_row, cached = self._run_round(None, timeout)
        t0 = time.perf_counter()
        results = [by_row[r] for r in plan.rows]
        if any(not sp.issparse(r) for r in results):
            results = [r.toarray() if sp.issparse(r) else np.asarray(r) for r in results]
        errors = [self._term_errors[r] for r in plan.rows]
        blocks = plan.combine(results, term_errors=errors)
        grid = [[blocks[p * self.k_b + q] for q in range(self.k_b)] for p in range(self.k_a)]
        m, p = self.shape
        if sp.issparse(blocks[0]):
            out: Any = sp.csr_array(sp.block_array(grid, format="csr")[:m, :p])
        else:
            out = np.block(grid)[:m, :p]
            # dense worker products, leftovers dropped: sparse again unless A @ B is dense
            if np.count_nonzero(out) < kernels.DENSE_OUTPUT_DENSITY * out.size:
                out = sp.csr_array(out)
        self._finish_report(rr, plan, time.perf_counter() - t0, cached)
        return out
