"""Sparse-aware decoding of coded results (docs/theory.md section 7).

The responders ``R`` of a round sent ``Y_r = sum_j E[r, j] Z_j`` for the
unknown blocks ``Z_j``.  A :class:`Decoder` picks ``k`` of them whose rows
``E_W`` are well conditioned and solves ``E_W Z = Y_W`` without forming a dense
inverse where it need not:

1. a structural perfect matching puts one responder on each unknown;
2. the strongly connected components of the matched graph give the
   block-triangular form of ``E_W`` (Dulmage-Mendelsohn fine decomposition);
3. the components are solved in topological order: a component of one row of
   weight one is a copy (a scaled copy when its coefficient is not 1), a small
   one uses a dense LU, a large one a sparse LU.

Systems of at most 64 unknowns then apply their inverse, computed once by
that substitution and cached with the plan, as one dense product (cheaper
than walking the components from Python); larger ones substitute per call.

Plans are cached per responder set, so iterative use (the same fast workers
round after round) factorises once.  Dense results (matrix-vector) go through
the substitution above; sparse results (matrix-matrix) are decoded as sparse
linear combinations with the ``lincomb`` kernel, the same operation as
encoding.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components, maximum_bipartite_matching

from . import kernels

__all__ = [
    "DEFAULT_MAX_CONDITION",
    "DEFAULT_MAX_CONDITION_FLOAT32",
    "DecodePlan",
    "Decoder",
    "default_max_condition",
]

#: Largest condition number of the responders' system that a round accepts
#: before it waits for one more worker.  Decoding multiplies the relative
#: rounding error of the workers' results (about 1e-16 in float64) by at most
#: the condition number, so 1e10 keeps the decoded result within about 1e-6
#: relative error in float64.  Codes designed here sit far below it (the sparse
#: code's worst case for n = 20, k = 16 is about 1e5); real Vandermonde codes
#: cross it from about n = 24.
DEFAULT_MAX_CONDITION = 1e10

#: The same limit for jobs that compute in float32 (workers' results carry
#: relative rounding errors of about 6e-8): a condition number of 1e5 bounds
#: the decoded error by about 6e-3 in the worst case; typical errors are far
#: smaller (1e-6 for the sparse code of n = 20, k = 16, see the tests).
DEFAULT_MAX_CONDITION_FLOAT32 = 1e5


def default_max_condition(dtype) -> float:
    """:data:`DEFAULT_MAX_CONDITION`, or its float32 counterpart for float32 work."""
    return DEFAULT_MAX_CONDITION_FLOAT32 if np.dtype(dtype) == np.float32 else DEFAULT_MAX_CONDITION


# components up to this size are solved with a dense LU; larger ones with SuperLU
_DENSE_COMPONENT = 48

# Systems up to this many unknowns apply their cached k x k inverse (one BLAS
# product) instead of walking the components: measured at n = 20, k = 16,
# 2000-row blocks, 0.15 ms against 1 ms for the substitution, whose cost is
# Python overhead per component.  Above it the sparse substitution wins, as
# the inverse of a sparse system fills in: k^2 against about w k per column.
_DENSE_APPLY = 64

#: Sparse decoding drops an entry that is zero to within the rounding of its
#: own linear combination: ``|C_ij| <= DECODE_DROP_ROUNDING * eps * sum_t
#: |g_t| (|Y_t[i, j]| + err_t[i, j])``, where ``err_t`` is what the worker's
#: product may carry (``term_errors`` of :meth:`DecodePlan.combine`). What
#: that drops are cancellation leftovers of other blocks (about 1e-12) and
#: explicit zeros, which left 3.6-5.5 times scipy's nonzeros in A @ B.
DECODE_DROP_ROUNDING = 4.0


@dataclass
class _Component:
    cols: np.ndarray  # unknowns solved here
    rows: np.ndarray  # positions (within W) of the responders that solve them
    coupling: sp.csr_array | None  # E[rows, earlier unknowns], None if no dependency
    kind: str  # "copy" | "scale" | "dense" | "sparse"
    # scalar, lu_factor tuple or SuperLU object, told apart by `kind` (SuperLU is
    # untyped, so no union of the three can be narrowed)
    factor: Any


@dataclass
class DecodePlan:
    """How one responder set is decoded.

    Attributes
    ----------
    rows : ndarray
        The ``k`` (or, for a least-squares plan, all) encoding rows used, in
        the order their results must be stacked.
    condition : float
        2-norm condition number of the system solved.
    method : str
        ``"triangular"`` (block-triangular substitution) or ``"lstsq"``.
    """

    rows: np.ndarray
    condition: float
    method: str
    components: list[_Component] = field(default_factory=list, repr=False)
    pinv: np.ndarray | None = field(default=None, repr=False)
    k: int = 0
    #: which plan this is, in the order the decoder made them
    serial: int = 0
    _inverse: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_components(self) -> int:
        return len(self.components)

    def solve(self, Y: np.ndarray) -> np.ndarray:
        """Solve for the unknown blocks from dense results.

        ``Y`` has shape ``(len(rows), ...)``: ``Y[i]`` is the result of
        encoding row ``rows[i]``.  Returns ``Z`` of shape ``(k, ...)``.
        """
        Y = np.asarray(Y)
        if Y.shape[0] != len(self.rows):
            raise ValueError(
                f"Y has {Y.shape[0]} results, expected {len(self.rows)} (one per plan row)"
            )
        tail = Y.shape[1:]
        Y2 = Y.reshape(Y.shape[0], -1)
        work = np.result_type(Y2.dtype, np.float64)
        if self.method == "lstsq":
            return (self._lstsq_inverse() @ Y2.astype(work, copy=False)).reshape((self.k, *tail))
        if self.k <= _DENSE_APPLY:
            return (self.inverse() @ Y2.astype(work, copy=False)).reshape((self.k, *tail))
        return self._substitute(Y2, work).reshape((self.k, *tail))

    def _substitute(self, Y2: np.ndarray, work: np.dtype) -> np.ndarray:
        """Block-triangular substitution, component by component."""
        Z = np.zeros((self.k, Y2.shape[1]), dtype=work)
        for c in self.components:
            rhs = Y2[c.rows].astype(work, copy=True) if c.kind != "copy" else Y2[c.rows]
            if c.coupling is not None:
                rhs = rhs - c.coupling @ Z
            if c.kind == "copy":
                Z[c.cols] = rhs
            elif c.kind == "scale":
                Z[c.cols] = rhs / c.factor
            elif c.kind == "dense":
                Z[c.cols] = la.lu_solve(c.factor, rhs, check_finite=False)
            else:
                Z[c.cols] = c.factor.solve(np.asarray(rhs, dtype=np.float64))
        return Z

    def _lstsq_inverse(self) -> np.ndarray:
        if self.pinv is None:
            raise RuntimeError("a least-squares DecodePlan was made without its pseudo-inverse")
        return self.pinv

    def inverse(self) -> np.ndarray:
        """The ``k x len(rows)`` matrix ``G`` with ``Z = G @ Y`` (cached)."""
        if self._inverse is None:
            if self.method == "lstsq":
                self._inverse = self._lstsq_inverse()
            else:
                self._inverse = self._substitute(np.eye(len(self.rows)), np.dtype(np.float64))
        return self._inverse

    def combine(
        self,
        results: Sequence[object],
        *,
        n_threads: int | None = None,
        term_errors: Sequence | None = None,
        drop_rounding: float | None = DECODE_DROP_ROUNDING,
    ) -> list[object]:
        """Decode results that are matrices (sparse or dense), one per plan row.

        Each unknown is a linear combination of the results; only the
        nonzero coefficients of the decoding matrix are used, so a copy stays
        a copy and sparse results stay sparse. Sparse results keep only the
        entries that are not zero to within the decode's rounding bound
        (:data:`DECODE_DROP_ROUNDING`; ``drop_rounding=None`` keeps them all).
        ``term_errors[i]``: optional ``(row, col)`` vectors bounding the
        rounding result ``i`` carries in, ``row[r] * col[c] * eps`` at entry
        ``(r, c)`` (see :func:`kernels.lincomb`).
        """
        if term_errors is not None and len(term_errors) != len(results):
            raise ValueError(
                f"term_errors has {len(term_errors)} entries, expected one per result "
                f"({len(results)})"
            )
        G = self.inverse()
        out = []
        for j in range(self.k):
            # Only exact zeros are skipped: the substitution leaves the zeros
            # of the block-triangular structure exactly 0.0.  A relative cut
            # (say 1e-13 of the row's largest entry) would drop real terms
            # when a row mixes coefficients of very different sizes.
            nz = np.flatnonzero(G[j])
            mats = [results[int(i)] for i in nz]
            errs = None if term_errors is None else [term_errors[int(i)] for i in nz]
            block = kernels.lincomb(
                mats,
                G[j, nz],
                n_threads=n_threads,
                drop_rounding=drop_rounding,
                term_errors=errs if drop_rounding is not None else None,
            )
            if drop_rounding is not None and isinstance(block, np.ndarray) and nz.size > 1:
                _drop_dense_leftovers(block, mats, G[j, nz], errs, drop_rounding)
            out.append(block)
        return out


def _drop_dense_leftovers(
    C: np.ndarray,
    mats: Sequence[Any],  # scipy sparse (untyped) or dense
    coeffs: np.ndarray,
    errs: Sequence | None,
    factor: float,
) -> None:
    """Zero, in place, the entries of a dense combination that are zero to within its rounding.

    The same bound as the sparse path (:func:`kernels.lincomb`):
    ``|C_ij| <= factor * eps * sum_t |g_t| (|Y_t|_ij + e_t,ij)`` with ``e_t``
    the rounding result ``t`` carries in (``row[i] * col[j]``), never a fixed
    threshold: a product whose true value is 0 but came back as 1e-12 from
    cancellation goes, a real small term stays.
    """
    eps = np.finfo(C.dtype).eps
    bound = np.zeros(C.shape, dtype=np.float64)
    for t, (Y, g) in enumerate(zip(mats, coeffs, strict=True)):
        dense = Y.toarray() if sp.issparse(Y) else np.asarray(Y)
        term = np.abs(dense, dtype=np.float64)
        if errs is not None and errs[t] is not None:
            row, col = errs[t]
            term += np.multiply.outer(np.asarray(row, dtype=np.float64), col).reshape(term.shape)
        bound += abs(float(g)) * term
    bound *= factor * eps
    C[np.abs(C) <= bound] = 0.0


class Decoder:
    """Decoding plans for one encoding matrix, cached per responder set.

    Parameters
    ----------
    encoding : sparse or dense (n_rows, k)
        Row ``r`` holds the coefficients of result ``r``.
    max_condition : float
        A responder set whose best system is worse conditioned than this is
        not accepted (the round waits for another worker) unless no other
        worker can answer.  See :data:`DEFAULT_MAX_CONDITION`.
    cache_size : int
        How many responder sets to keep plans for.

    Examples
    --------
    >>> import numpy as np
    >>> E = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> dec = Decoder(E)
    >>> plan = dec.plan([2, 0])
    >>> Z = plan.solve(np.array([[3.0], [1.0]]))  # results of rows 2 and 0
    >>> Z.ravel().tolist()
    [1.0, 2.0]
    """

    def __init__(
        self, encoding, *, max_condition: float = DEFAULT_MAX_CONDITION, cache_size: int = 256
    ):
        E = sp.csr_array(encoding, dtype=np.float64)
        E.sum_duplicates()
        E.eliminate_zeros()
        if E.ndim != 2:
            raise ValueError(f"encoding must be 2-D, got {E.ndim}-D")
        if not np.all(np.isfinite(E.data)):
            raise ValueError("encoding holds NaN or inf coefficients")
        self.encoding = E
        self.n_rows, self.k = E.shape
        self.max_condition = float(max_condition)
        self._cache: OrderedDict[frozenset[int], DecodePlan | None] = OrderedDict()
        self._cache_size = int(cache_size)
        self.hits = 0
        self.misses = 0

    def plan(self, rows: Sequence[int]) -> DecodePlan | None:
        """The best plan for results of ``rows``, or None if they cannot give every unknown.

        ``rows`` in arrival order; earlier rows are preferred when there are
        more than ``k``.
        """
        rows = [int(r) for r in rows]
        if len(rows) < self.k:
            return None
        key = frozenset(rows)
        if key in self._cache:
            self.hits += 1
            self._cache.move_to_end(key)
            return self._cache[key]
        self.misses += 1
        result = self._make_plan(rows)
        if result is not None:
            result.serial = self.misses
        self._cache[key] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result

    def acceptable(self, plan: DecodePlan | None) -> bool:
        """A plan good enough to stop waiting: it exists and its condition is within the limit."""
        return plan is not None and plan.condition <= self.max_condition

    def enough(self, rows: Sequence[int], total: int) -> bool:
        """THE decodability rule of a round: may the results of ``rows`` end it?

        Yes when they give a plan within ``max_condition``, or when all
        ``total`` results that can arrive are in and they give any plan (the
        best system there is beats no answer).  Coded jobs end their rounds
        with it and the experiments' replays use it, so both agree.
        """
        if len(rows) < self.k:
            return False
        plan = self.plan(rows)
        return self.acceptable(plan) or (plan is not None and len(rows) >= total)

    # -- construction -------------------------------------------------

    def _make_plan(self, rows: list[int]) -> DecodePlan | None:
        E_R = self.encoding[rows]
        match = maximum_bipartite_matching(E_R, perm_type="row")  # per unknown: matched responder
        if np.any(match < 0):
            return None  # structurally rank deficient: some unknown is out of reach
        chosen: np.ndarray | None
        if len(rows) == self.k:
            chosen = np.arange(self.k)
        else:
            chosen = self._choose_rows(E_R, match)
            if chosen is None:
                return None
        W = np.asarray(rows)[chosen]
        E_W = self.encoding[W]
        cond = _condition(E_W)
        if not np.isfinite(cond):
            return None
        plan = self._triangular_plan(E_W, W, cond)
        if cond > self.max_condition and len(rows) > self.k:
            # more responders than unknowns: least squares on all of them is
            # at least as well conditioned as any square subset
            ls = self._lstsq_plan(E_R, np.asarray(rows))
            if ls.condition < cond:
                return ls
        return plan

    def _choose_rows(self, E_R: sp.csr_array, match: np.ndarray) -> np.ndarray | None:
        """Pick k of the responders: the structural matching if its system is
        nonsingular, else column-pivoted QR (rank-revealing) on the dense rows."""
        cand = np.sort(match)
        if np.isfinite(_condition(E_R[cand])):
            return cand
        dense = E_R.toarray()
        _, R, piv = la.qr(dense.T, pivoting=True, mode="economic")
        diag = np.abs(np.diag(R))
        if diag.size < self.k or diag[self.k - 1] <= diag[0] * 1e-12:
            return None
        return np.sort(piv[: self.k])

    def _lstsq_plan(self, E_R: sp.csr_array, rows: np.ndarray) -> DecodePlan:
        dense = E_R.toarray()
        return DecodePlan(
            rows=rows,
            condition=float(np.linalg.cond(dense)),
            method="lstsq",
            pinv=np.linalg.pinv(dense),
            k=self.k,
        )

    def _triangular_plan(self, E_W: sp.csr_array, W: np.ndarray, cond: float) -> DecodePlan:
        k = self.k
        match = maximum_bipartite_matching(E_W, perm_type="row")  # unknown j solved by row match[j]
        owner_of_row = np.empty(k, dtype=np.int64)
        owner_of_row[match] = np.arange(k)
        # graph on unknowns: j -> l when row match[j] also involves l (l must be known first)
        coo = E_W.tocoo()
        src = owner_of_row[coo.row]
        keep = src != coo.col
        G = sp.csr_array((np.ones(int(keep.sum())), (src[keep], coo.col[keep])), shape=(k, k))
        n_comp, label = connected_components(G, directed=True, connection="strong")
        order = _topological_components(G, label, n_comp)
        components = []
        solved = np.zeros(k, dtype=bool)
        for comp in order:
            cols = np.flatnonzero(label == comp)
            rws = match[cols]
            block_rows = E_W[rws]
            inside = np.zeros(k, dtype=bool)
            inside[cols] = True
            diag = block_rows[:, cols]
            other = block_rows.copy()
            other.data = other.data * (~inside[other.indices])
            other.eliminate_zeros()
            assert not np.any(~solved[other.indices]), "components out of order"
            coupling = other if other.nnz else None
            if cols.size == 1:
                coef = float(diag.toarray()[0, 0])
                kind, factor = (
                    ("copy", 1.0) if coef == 1.0 and coupling is None else ("scale", coef)
                )
            elif cols.size <= _DENSE_COMPONENT:
                kind, factor = "dense", la.lu_factor(diag.toarray(), check_finite=False)
            else:
                kind, factor = "sparse", spla.splu(sp.csc_matrix(diag))
            components.append(_Component(cols, rws, coupling, kind, factor))
            solved[cols] = True
        return DecodePlan(rows=W, condition=cond, method="triangular", components=components, k=k)


def _condition(M: sp.csr_array) -> float:
    """2-norm condition number; inf when singular."""
    dense = M.toarray()
    if dense.shape[0] != dense.shape[1] and dense.shape[0] < dense.shape[1]:
        return float("inf")
    with np.errstate(all="ignore"):
        s = np.linalg.svd(dense, compute_uv=False)
    if s.size == 0 or s[-1] <= s[0] * np.finfo(float).eps * max(dense.shape):
        return float("inf")
    return float(s[0] / s[-1])


def _topological_components(G: sp.csr_array, label: np.ndarray, n_comp: int) -> list[int]:
    """Components in an order where every dependency comes first (Kahn's algorithm)."""
    coo = G.tocoo()
    a, b = label[coo.row], label[coo.col]
    cross = a != b
    # edge comp(a) -> comp(b) means a depends on b: b must come first
    deps = sp.csr_array((np.ones(int(cross.sum())), (a[cross], b[cross])), shape=(n_comp, n_comp))
    deps.sum_duplicates()
    remaining = np.diff(deps.indptr).astype(np.int64)  # unsolved dependencies per component
    dependents = deps.T.tocsr()
    ready = list(np.flatnonzero(remaining == 0))
    order = []
    while ready:
        c = ready.pop()
        order.append(int(c))
        for d in dependents.indices[dependents.indptr[c] : dependents.indptr[c + 1]]:
            remaining[d] -= 1
            if remaining[d] == 0:
                ready.append(d)
    if len(order) != n_comp:  # pragma: no cover - the condensation of SCCs is acyclic
        raise RuntimeError("cycle between strongly connected components")
    return order
