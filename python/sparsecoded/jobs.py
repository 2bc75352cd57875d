"""Coded jobs: encode once, place the coded blocks, answer from the first responders.

:class:`CodedMatVec` answers ``A @ x`` for many ``x``; :class:`CodedMatMat`
answers ``A @ B``.  Both encode with the C++ kernel, place each worker's coded
blocks once on a pool (:class:`~sparsecoded.LocalPool`,
:class:`~sparsecoded.DaskPool` or :class:`~sparsecoded.inlinepool.InlinePool`),
and in each round take results in arrival order until the responders'
system can be decoded with a condition number below ``max_condition``; the
other workers are cancelled.  ``report`` describes the last call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import kernels
from .decode import DecodePlan, Decoder, default_max_condition
from .errors import NotEnoughWorkers
from .pool import RoundResult, SlotKey
from .stragglers import StragglerModel

__all__ = ["CodedMatMat", "CodedMatVec", "JobReport"]

# largest stacked-results buffer a job keeps between rounds
_KEEP_BYTES = 64 << 20


@dataclass
class JobReport:
    """What the last call of a coded job did, and how long each step took (seconds)."""

    encode_seconds: float
    place_seconds: float
    round_seconds: float = 0.0
    decode_seconds: float = 0.0
    #: per device: compute seconds of the results it delivered (injected delay excluded)
    compute_seconds: dict[int, float] = field(default_factory=dict)
    answered: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    #: encoding rows whose results were decoded
    rows_used: list[int] = field(default_factory=list)
    #: 2-norm condition number of the system solved
    condition: float = float("nan")
    decode_method: str = ""
    #: whether the decoding plan came from the cache (same responders as before)
    decode_cached: bool = False
    #: "simulated" for InlinePool rounds, else how the pool ran them
    mode: str = "live"
    round_index: int = -1

    def as_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


def _as_applied(encoding: sp.csr_array, dtype: np.dtype) -> sp.csr_array:
    """The encoding as the kernel applied it: rounded to the blocks' dtype, in float64."""
    return sp.csr_array(encoding.astype(dtype).astype(np.float64))


def _as_csr(M: Any, name: str) -> sp.csr_array:
    if sp.issparse(M):
        out = sp.csr_array(M)
    else:
        arr = np.asarray(M)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be a 2-D matrix, got an array of shape {arr.shape}")
        out = sp.csr_array(arr)
    if out.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got {out.ndim}-D")
    return out


def _check_pool(pool: Any, n_devices: int) -> None:
    if pool.n_workers < n_devices:
        raise ValueError(
            f"the pool has {pool.n_workers} workers, "
            f"expected at least the code's {n_devices} devices"
        )


class _CodedJob:
    """What MV and MM jobs share: placement, rounds, straggler actions, decoding."""

    op: str

    def __init__(
        self,
        code: Any,
        pool: Any,
        encoding: sp.csr_array,
        owner: np.ndarray,
        stragglers: StragglerModel | None,
        max_condition: float | None,
        timeout: float | None,
    ):
        self.code = code
        self.pool = pool
        self.stragglers = stragglers
        self.timeout = timeout
        self.k = encoding.shape[1]
        self._max_condition = max_condition
        self._decoder = Decoder(encoding, max_condition=default_max_condition(np.float64))
        self._job = f"{self.op}-{uuid.uuid4().hex[:12]}"
        self._round = 0
        self._owner = owner
        self._slot_row: dict[SlotKey, int] = {}
        self._devices_with_work: list[int] = []
        self.report: JobReport | None = None
        self._ybuf: np.ndarray | None = None
        self._closed = False

    def _set_precision(self, dtype: np.dtype, applied: sp.csr_array) -> None:
        """Decode with the coefficients as the workers applied them, at the
        condition limit of the working precision.

        A float32 job's coded blocks were built with the encoding rounded to
        float32; decoding with the float64 coefficients would add an error of
        about cond x 6e-8 on top of the workers' own rounding.
        """
        self.dtype = np.dtype(dtype)
        limit = self._max_condition
        if limit is None:
            limit = default_max_condition(self.dtype)
        self._decoder = Decoder(applied, max_condition=limit)

    def _place(self, row_payloads: dict[int, Any], encode_seconds: float) -> None:
        per_worker: list[list[Any]] = [[] for _ in range(self.pool.n_workers)]
        for r in sorted(row_payloads):
            w = int(self._owner[r])
            self._slot_row[(w, len(per_worker[w]))] = r
            per_worker[w].append(row_payloads[r])
        self._devices_with_work = [w for w, p in enumerate(per_worker) if p]
        self._n_slots = sum(len(p) for p in per_worker)
        t0 = time.perf_counter()
        self.pool.place(self._job, per_worker)
        self._base_report = JobReport(
            encode_seconds=encode_seconds, place_seconds=time.perf_counter() - t0
        )
        self.report = self._base_report

    def _enough(self, results: Mapping[SlotKey, Any]) -> bool:
        if len(results) < self.k:
            return False
        plan = self._decoder.plan([self._slot_row[key] for key in results])
        if self._decoder.acceptable(plan):
            return True
        # every result is in: take the best system there is rather than fail
        return plan is not None and len(results) == self._n_slots

    def _best_of_what_arrived(self, exc: NotEnoughWorkers) -> RoundResult | None:
        """The round's results when no more can come and they do decode.

        ``_enough`` holds out for a system within ``max_condition``; once
        every live worker has answered or died (the pool hands over what
        arrived), the best system there is beats no answer, as when every
        result is in.  ``report.condition`` then says how good it is.
        """
        rr = exc.partial
        if rr is None or len(rr.results) < self.k:
            return None
        plan = self._decoder.plan([self._slot_row[key] for key in rr.results])
        return rr if plan is not None else None

    def _run_round(
        self, operand: np.ndarray | None
    ) -> tuple[RoundResult, DecodePlan, dict[int, Any], bool]:
        if self._closed:
            raise ValueError("this coded job is closed")
        actions = None
        if self.stragglers is not None:
            actions = self.stragglers.plan(self.pool.n_workers, self._round)
        made_before = self._decoder.misses
        try:
            rr = self.pool.run(
                self._job,
                self.op,
                operand,
                enough=self._enough,
                actions=actions,
                timeout=self.timeout,
            )
        except NotEnoughWorkers as exc:
            rr = self._best_of_what_arrived(exc)
            if rr is not None:
                by_row = {self._slot_row[key]: rr.results[key] for key in rr.order}
                plan = self._decoder.plan(list(by_row))
                return rr, plan, by_row, plan.serial <= made_before
            raise NotEnoughWorkers(
                f"{type(self).__name__} round {self._round} failed: decoding needs results "
                f"covering all k = {self.k} blocks (any {self.k} of the "
                f"{len(self._devices_with_work)} workers "
                f"for a straggler-optimal code); dead workers {exc.dead}, answered {exc.answered}. "
                f"Pool said: {exc}",
                dead=exc.dead,
                answered=exc.answered,
            ) from exc
        finally:
            self._round += 1
        by_row = {self._slot_row[key]: rr.results[key] for key in rr.order}
        plan = self._decoder.plan(list(by_row))
        cached = plan.serial <= made_before  # factorised in an earlier round
        return rr, plan, by_row, cached

    def _finish_report(
        self, rr: RoundResult, plan: DecodePlan, decode_seconds: float, cached: bool
    ) -> None:
        per_device: dict[int, float] = {}
        for (w, _), s in rr.compute_seconds.items():
            per_device[w] = per_device.get(w, 0.0) + s
        base = self._base_report
        self.report = JobReport(
            encode_seconds=base.encode_seconds,
            place_seconds=base.place_seconds,
            round_seconds=rr.seconds,
            decode_seconds=decode_seconds,
            compute_seconds=per_device,
            answered=rr.answered,
            cancelled=list(rr.cancelled),
            dead=list(rr.dead),
            rows_used=[int(r) for r in plan.rows],
            condition=plan.condition,
            decode_method=plan.method,
            decode_cached=cached,
            mode=rr.extra.get("mode", "live"),
            round_index=self._round - 1,
        )

    def close(self) -> None:
        """Free the blocks this job placed on the pool (the pool stays open)."""
        if not self._closed:
            self._closed = True
            try:
                self.pool.drop(self._job)
            except Exception:  # noqa: BLE001 - the pool may already be closed
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CodedMatVec(_CodedJob):
    """``A @ x`` from the first responders of a coded pool.

    Parameters
    ----------
    A : sparse or dense (m, c)
        The matrix; converted to CSR once.  float32 stays float32 (the job
        then works, and answers, in float32), other types become float64.
    code : MVCode
        Its encoding's ``k`` row blocks must fit in ``A`` (``k <= m``).
    pool : LocalPool, DaskPool or InlinePool
        With at least ``code.n_workers`` workers; worker ``w`` computes the
        rows of the encoding whose ``owner`` is ``w``.
    stragglers : StragglerModel, optional
        Injected on the worker side, per call (round index = call number).
    max_condition : float, optional
        Largest condition number of the responders' system a round accepts
        before it waits for one more worker.  Default by working precision:
        :data:`sparsecoded.decode.DEFAULT_MAX_CONDITION` (1e10) for float64,
        :data:`~sparsecoded.decode.DEFAULT_MAX_CONDITION_FLOAT32` (1e5) for
        float32.
    timeout : float, optional
        Per-round limit, default the pool's.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparsecoded import design_mv
    >>> from sparsecoded.inlinepool import InlinePool
    >>> A = sp.random_array((100, 50), density=0.05, format="csr", rng=0)
    >>> x = np.ones(50)
    >>> with InlinePool(6) as pool:
    ...     op = CodedMatVec(A, design_mv(6, 4, seed=0), pool)
    ...     bool(np.allclose(op @ x, A @ x))
    True
    """

    op = "matvec"

    def __init__(
        self,
        A: Any,
        code: Any,
        pool: Any,
        *,
        stragglers: StragglerModel | None = None,
        max_condition: float | None = None,
        timeout: float | None = None,
    ):
        A = _as_csr(A, "A")
        encoding = sp.csr_array(code.encoding)
        n_rows, k = encoding.shape
        m, c = A.shape
        if k > m:
            raise ValueError(
                f"the code splits A into k = {k} row blocks, but A has only {m} rows: "
                f"expected k <= {m}"
            )
        owner = np.asarray(
            getattr(code, "owner", None)
            if getattr(code, "owner", None) is not None
            else np.arange(n_rows)
        )
        n_devices = int(getattr(code, "n_workers", owner.max() + 1))
        _check_pool(pool, n_devices)
        self.shape = (m, c)
        super().__init__(code, pool, encoding, owner, stragglers, max_condition, timeout)
        t0 = time.perf_counter()
        blocks = kernels.encode_row_blocks(A, encoding)
        encode_seconds = time.perf_counter() - t0
        self._set_precision(blocks[0].dtype, _as_applied(encoding, blocks[0].dtype))
        self.block_rows = blocks[0].shape[0]
        weights = np.diff(encoding.indptr)
        self._place({r: blocks[r] for r in range(n_rows) if weights[r] > 0}, encode_seconds)

    def __call__(self, x: Any) -> np.ndarray:
        """``A @ x`` for a vector ``x`` (length c) or a dense matrix ``X`` (c rows)."""
        if sp.issparse(x):
            raise ValueError(
                f"x must be a dense vector or matrix, found a scipy sparse {x.format} matrix; "
                "use CodedMatMat for sparse operands"
            )
        x = np.asarray(x)
        m, c = self.shape
        if x.ndim not in (1, 2):
            raise ValueError(
                f"x must be a vector or a 2-D matrix, got {x.ndim}-D (shape {x.shape})"
            )
        if x.shape[0] != c:
            what = "x has length" if x.ndim == 1 else "X has"
            rows = "" if x.ndim == 1 else " rows"
            raise ValueError(f"{what} {x.shape[0]}{rows}, expected A.shape[1] = {c}")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
            raise ValueError(f"x must hold real numbers, got dtype {x.dtype}")
        operand = np.ascontiguousarray(x, dtype=self.dtype)
        finite = np.isfinite(operand)
        if not finite.all():
            # a coded block mixes several blocks: a NaN or inf would spread to
            # rows of the answer that A @ x keeps finite
            bad = np.argwhere(~finite)[0]
            where = int(bad[0]) if x.ndim == 1 else tuple(int(i) for i in bad)
            raise ValueError(
                f"x must be finite, found {operand[tuple(bad)]} at index {where} "
                f"(in {self.dtype}); coded decoding would spread it to other rows"
            )
        rr, plan, by_row, cached = self._run_round(operand)
        t0 = time.perf_counter()
        Y = self._stack([by_row[r] for r in plan.rows])
        Z = plan.solve(Y)  # (k, b[, ncols])
        out = Z.reshape((self.k * self.block_rows, *Z.shape[2:]))[:m]
        # the job works in A's precision (x was cast to it): say so in the dtype
        out = out.astype(self.dtype, copy=False)
        self._finish_report(rr, plan, time.perf_counter() - t0, cached)
        return out

    def __matmul__(self, x: Any) -> np.ndarray:
        return self(x)

    def _stack(self, results: list[np.ndarray]) -> np.ndarray:
        """The results as one array, in a buffer kept from round to round.

        A fresh array of this size costs a page fault per 4 KiB on first
        touch: measured at n = 20, k = 16 with 2,000-row blocks, stacking
        into new memory took 160 us of a 300 us decode, into the kept buffer
        about 30 us.  Buffers over ``_KEEP_BYTES`` are not kept.
        """
        shape = (len(results), *results[0].shape)
        buf = self._ybuf
        if buf is None or buf.shape != shape or buf.dtype != results[0].dtype:
            buf = np.empty(shape, dtype=results[0].dtype)
            self._ybuf = buf if buf.nbytes <= _KEEP_BYTES else None
        return np.stack(results, out=buf)


def _product_error_scales(P: sp.csr_array, Q: sp.csr_array) -> tuple[np.ndarray, np.ndarray]:
    """``(row, col)`` with ``|fl(P @ Q) - P @ Q|[i, j] <= eps * row[i] * col[j]`` (about).

    Entry (i, j) sums at most nnz(P[i]) products, so its rounding is at most
    ``nnz(P[i]) eps sum_k |P_ik| |Q_kj| <= nnz(P[i]) eps ||P[i, :]|| ||Q[:, j]||``.
    """
    P = sp.csr_array(P)
    Q = sp.csc_array(Q)
    row = np.sqrt(np.asarray(P.multiply(P).sum(axis=1), dtype=np.float64)).ravel()
    row *= np.diff(P.indptr)
    col = np.sqrt(np.asarray(Q.multiply(Q).sum(axis=0), dtype=np.float64)).ravel()
    return row, col


class CodedMatMat(_CodedJob):
    """``A @ B`` from the first responders of a coded pool (SPEC section 3).

    ``A`` is split by rows into ``code.k_a`` blocks, ``B`` by columns into
    ``code.k_b``; worker ``i`` computes ``Ã_i @ B̃_i``.  :meth:`compute`
    returns a ``csr_array`` when every decoded block is sparse, else a dense
    array.
    """

    op = "matmat"

    def __init__(
        self,
        A: Any,
        B: Any,
        code: Any,
        pool: Any,
        *,
        stragglers: StragglerModel | None = None,
        max_condition: float | None = None,
        timeout: float | None = None,
    ):
        A = _as_csr(A, "A")
        B = _as_csr(B, "B")
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
        owner = np.asarray(
            getattr(code, "owner", None)
            if getattr(code, "owner", None) is not None
            else np.arange(n_rows)
        )
        super().__init__(code, pool, kron, owner, stragglers, max_condition, timeout)
        t0 = time.perf_counter()
        blocks_a = kernels.encode_row_blocks(A, Ea)
        blocks_bt = kernels.encode_row_blocks(sp.csr_array(B.T), Eb)
        blocks_b = [sp.csr_array(bt.T) for bt in blocks_bt]
        encode_seconds = time.perf_counter() - t0
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
        payloads = {r: (blocks_a[r], blocks_b[r]) for r in range(n_rows) if wa[r] > 0 and wb[r] > 0}
        # what each worker's product may carry in rounding, for the decode's
        # drop of cancellation leftovers (decode.DECODE_DROP_ROUNDING)
        self._term_errors = {r: _product_error_scales(*payloads[r]) for r in payloads}
        self._place(payloads, encode_seconds)

    def compute(self) -> sp.csr_array | np.ndarray:
        """Run one round and return ``A @ B``."""
        rr, plan, by_row, cached = self._run_round(None)
        t0 = time.perf_counter()
        results = [by_row[r] for r in plan.rows]
        if any(not sp.issparse(r) for r in results):
            results = [r.toarray() if sp.issparse(r) else np.asarray(r) for r in results]
        errors = [self._term_errors[r] for r in plan.rows] if sp.issparse(results[0]) else None
        blocks = plan.combine(results, term_errors=errors)
        grid = [[blocks[p * self.k_b + q] for q in range(self.k_b)] for p in range(self.k_a)]
        m, p = self.shape
        if sp.issparse(blocks[0]):
            out: Any = sp.csr_array(sp.block_array(grid, format="csr")[:m, :p])
        else:
            out = np.block(grid)[:m, :p]
        self._finish_report(rr, plan, time.perf_counter() - t0, cached)
        return out
