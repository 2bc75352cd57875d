"""Encoding matrices: the sparse straggler-optimal designs and the classic baselines.

A matrix-vector code (:class:`MVCode`) is an ``n_rows x k`` encoding matrix ``E``:
row ``r`` holds the coefficients with which its owner mixes the ``k`` row
blocks of ``A``.  A matrix-matrix code (:class:`MMCode`) has one such matrix
for ``A`` (``n x k_a``) and one for ``B`` (``n x k_b``).  See SPEC sections 2-4
and 7.

Schemes
-------
``"sparse"``
    This package's minimum-weight design (SPEC 2 for MV, SPEC 3 for MM).
``"uncoded"``
    Worker i < k holds block i; the others hold nothing (weight 0).
``"replication"``
    Worker i holds block ``i mod k``.
``"mds"``
    Dense Gaussian mixing of all blocks.
``"polynomial"``
    Real Vandermonde at nodes ``z_i = -1 + 2 i / n``, ``i = 1..n``.
``"orthopoly"``
    Chebyshev polynomials at Chebyshev nodes (construction in
    :func:`_orthopoly_mv` and :func:`_orthopoly_mm`).
``"rkrp"`` (MM only)
    Systematic first ``k_a k_b`` workers, dense random parity workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import bounds

__all__ = ["MMCode", "MVCode", "MV_SCHEMES", "MM_SCHEMES", "design_mm", "design_mv"]

MV_SCHEMES = ("sparse", "uncoded", "replication", "mds", "polynomial", "orthopoly")
MM_SCHEMES = (*MV_SCHEMES, "rkrp")

DEFAULT_TRIALS = 5


def _as_csr(matrix: object, name: str) -> sp.csr_array:
    if sp.issparse(matrix):
        out = sp.csr_array(matrix, dtype=np.float64)
    else:
        arr = np.asarray(matrix, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got {arr.ndim} dimensions")
        out = sp.csr_array(arr)
    out.eliminate_zeros()
    out.sort_indices()
    return out


# schemes whose coefficients are generic for their support (MVCode.generic)
_GENERIC_MV = frozenset({"sparse", "mds", "polynomial", "orthopoly"})


def _row_weights(e: sp.csr_array) -> np.ndarray:
    return np.diff(e.indptr)


@dataclass(frozen=True, eq=False)
class MVCode:
    """A matrix-vector code: which blocks each stored row mixes, and how.

    Build one with :func:`design_mv`, or from your own matrix with
    :meth:`from_matrix` so that :func:`sparsecoded.certify` can judge it.

    Attributes
    ----------
    n_workers : int
        Physical devices.
    k : int
        Number of row blocks of A.
    stragglers : int
        Physical devices the code claims to tolerate in the worst case.
    weight : int
        Largest number of blocks mixed into one row.
    encoding : scipy.sparse.csr_array
        ``(n_rows, k)`` float64; ``n_rows == n_workers`` unless capacities.
    owner : numpy.ndarray
        Device of each row (``np.arange(n)`` for homogeneous codes).
    capacities : tuple of int or None
        Rows per device for heterogeneous codes.
    scheme : str
        How it was built (``"custom"`` for :meth:`from_matrix`).
    generic : bool
        True when the coefficients decode every responder set that the
        support pattern allows: drawn i.i.d. from a continuous distribution
        (``"sparse"``, ``"mds"``; singular with probability 0) or rows of a
        (Chebyshev-)Vandermonde matrix on distinct nodes (``"polynomial"``,
        ``"orthopoly"``).  Only then does :func:`sparsecoded.certify` accept
        its polynomial flow test on the support as a proof; a user's own
        matrix is ``False`` unless declared otherwise.
    """

    n_workers: int
    k: int
    stragglers: int
    weight: int
    encoding: sp.csr_array = field(repr=False)
    owner: np.ndarray = field(repr=False)
    capacities: tuple[int, ...] | None = None
    scheme: str = "custom"
    generic: bool = False

    @property
    def n_rows(self) -> int:
        """Number of stored coded blocks (rows of :attr:`encoding`)."""
        return int(self.encoding.shape[0])

    @classmethod
    def from_matrix(
        cls,
        encoding: object,
        *,
        owner: Sequence[int] | None = None,
        stragglers: int | None = None,
        scheme: str = "custom",
        generic: bool = False,
    ) -> MVCode:
        """Wrap a user's encoding matrix.

        Parameters
        ----------
        encoding : array_like or sparse matrix
            ``(n_rows, k)`` coefficients.
        owner : sequence of int, optional
            Device of each row; default one row per device.
        stragglers : int, optional
            Claimed tolerance; default the best possible (``n - k`` when
            homogeneous, :func:`sparsecoded.bounds.hetero_stragglers` otherwise).
        scheme : str
            Label.
        generic : bool
            Declare that the coefficients were drawn i.i.d. from a continuous
            distribution (see the class attribute); leave False otherwise, and
            :func:`sparsecoded.certify` will not take the support's flow test
            as a proof for your coefficients.

        Returns
        -------
        MVCode

        Examples
        --------
        >>> code = MVCode.from_matrix([[1, 0], [0, 1], [1, 1]])
        >>> code.n_workers, code.k, code.stragglers, code.weight
        (3, 2, 1, 2)
        """
        e = _as_csr(encoding, "encoding")
        n_rows, k = e.shape
        if k < 1 or n_rows < 1:
            raise ValueError(f"encoding must have at least 1 row and 1 column, got {e.shape}")
        if owner is None:
            own = np.arange(n_rows)
            caps = None
            n = n_rows
        else:
            own = np.asarray(owner, dtype=np.int64)
            if own.shape != (n_rows,):
                raise ValueError(f"owner must have length n_rows = {n_rows}, got {own.shape}")
            if own.min() < 0:
                raise ValueError(f"owner entries must be >= 0, got {own.min()}")
            n = int(own.max()) + 1
            caps = tuple(int(c) for c in np.bincount(own, minlength=n))
        if n_rows < k:
            raise ValueError(f"encoding must have at least k = {k} rows, got {n_rows}")
        if stragglers is None:
            stragglers = n - k if caps is None else bounds.hetero_stragglers(caps, k)
        return cls(
            n_workers=int(n),
            k=int(k),
            stragglers=int(stragglers),
            weight=int(_row_weights(e).max()),
            encoding=e,
            owner=own,
            capacities=caps,
            scheme=scheme,
            generic=bool(generic),
        )


@dataclass(frozen=True, eq=False)
class MMCode:
    """A matrix-matrix code: worker i returns ``(a_i . A)(b_i . B)``.

    Attributes
    ----------
    n_workers : int
    k_a, k_b : int
        Blocks of A (by rows) and of B (by columns).
    stragglers : int
        Workers the code claims to tolerate (``n - k_a k_b`` when optimal).
    weight_a, weight_b : int
        Largest row weights of the two encodings.
    encoding_a : scipy.sparse.csr_array
        ``(n, k_a)``.
    encoding_b : scipy.sparse.csr_array
        ``(n, k_b)``.
    scheme : str
    target_weights : tuple of int or None
        For ``"sparse"``: the minimal pair :func:`sparsecoded.bounds.mm_weights`.
    fallback : bool
        True when the search found no verified layout at the minimal pair and
        used the next feasible one (then ``(weight_a, weight_b) != target_weights``).
    fallback_reason : str or None
        Why, for each skipped pair: provably infeasible (fails
        :func:`sparsecoded.bounds.mm_counting_ok`) or not found by the search.
    """

    n_workers: int
    k_a: int
    k_b: int
    stragglers: int
    weight_a: int
    weight_b: int
    encoding_a: sp.csr_array = field(repr=False)
    encoding_b: sp.csr_array = field(repr=False)
    scheme: str = "custom"
    target_weights: tuple[int, int] | None = None
    fallback: bool = False
    fallback_reason: str | None = None

    @property
    def k(self) -> int:
        """Number of unknown product blocks, ``k_a * k_b``."""
        return self.k_a * self.k_b

    def product_rows(self) -> np.ndarray:
        """Dense ``(n, k_a k_b)`` system: row i is ``a_i kron b_i``.

        Returns
        -------
        numpy.ndarray

        Examples
        --------
        >>> code = MMCode.from_matrices([[1, 0], [0, 1]], [[1], [1]])
        >>> code.product_rows().tolist()
        [[1.0, 0.0], [0.0, 1.0]]
        """
        a = self.encoding_a.toarray()
        b = self.encoding_b.toarray()
        return (a[:, :, None] * b[:, None, :]).reshape(self.n_workers, -1)

    @classmethod
    def from_matrices(
        cls,
        encoding_a: object,
        encoding_b: object,
        *,
        stragglers: int | None = None,
        scheme: str = "custom",
    ) -> MMCode:
        """Wrap a user's pair of encoding matrices.

        Parameters
        ----------
        encoding_a : array_like or sparse matrix
            ``(n, k_a)``.
        encoding_b : array_like or sparse matrix
            ``(n, k_b)``.
        stragglers : int, optional
            Claimed tolerance, default ``n - k_a k_b``.
        scheme : str

        Returns
        -------
        MMCode

        Examples
        --------
        >>> code = MMCode.from_matrices([[1, 0], [0, 1], [1, 1]], [[1], [1], [1]])
        >>> code.k_a, code.k_b, code.stragglers
        (2, 1, 1)
        """
        ea = _as_csr(encoding_a, "encoding_a")
        eb = _as_csr(encoding_b, "encoding_b")
        if ea.shape[0] != eb.shape[0]:
            raise ValueError(
                f"encoding_b has {eb.shape[0]} rows, expected encoding_a.shape[0] = {ea.shape[0]}"
            )
        n, ka = ea.shape
        kb = eb.shape[1]
        bounds.check_mm_params(n, ka, kb)
        if stragglers is None:
            stragglers = n - ka * kb
        return cls(
            n_workers=int(n),
            k_a=int(ka),
            k_b=int(kb),
            stragglers=int(stragglers),
            weight_a=int(_row_weights(ea).max()),
            weight_b=int(_row_weights(eb).max()),
            encoding_a=ea,
            encoding_b=eb,
            scheme=scheme,
        )


# ---------------------------------------------------------------------------
# shared constructions


def cyclic_support(n_rows: int, k: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the cyclic layout of SPEC section 2.

    Row r starts at block ``floor(r k / n_rows)`` and takes ``w`` cyclically
    consecutive blocks.

    Parameters
    ----------
    n_rows, k, w : int

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Row and column index of every nonzero, row-major.

    Examples
    --------
    >>> r, c = cyclic_support(3, 3, 2)
    >>> c.tolist()
    [0, 1, 1, 2, 2, 0]
    """
    starts = (np.arange(n_rows, dtype=np.int64) * k) // n_rows
    cols = (starts[:, None] + np.arange(w)[None, :]) % k
    rows = np.repeat(np.arange(n_rows), w)
    return rows, cols.ravel()


def random_support(
    n_rows: int, k: int, w: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random support with w blocks per row and balanced block degrees.

    Each block is used ``floor(n w / k)`` or one more times; rows, in random
    order, take the w blocks with the most unused copies (random tie-break).
    Unlike :func:`cyclic_support` it carries no guarantee: the caller checks
    Hall's condition.

    Parameters
    ----------
    n_rows, k, w : int
    rng : numpy.random.Generator

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Row and column index of every nonzero.

    Examples
    --------
    >>> r, c = random_support(6, 4, 2, np.random.default_rng(0))
    >>> np.bincount(c, minlength=4).tolist()
    [3, 3, 3, 3]
    """
    demand = np.full(k, (n_rows * w) // k, dtype=np.int64)
    demand[rng.permutation(k)[: n_rows * w - int(demand.sum())]] += 1
    rows = np.empty((n_rows, w), dtype=np.int64)
    cols = np.empty((n_rows, w), dtype=np.int64)
    for i in rng.permutation(n_rows):
        key = demand + rng.random(k)
        pick = np.argpartition(-key, w - 1)[:w]
        demand[pick] -= 1
        rows[i] = i
        cols[i] = np.sort(pick)
    return rows.ravel(), cols.ravel()


RANDOM_LAYOUT_ATTEMPTS = 20


def _sparse_support(n, k, w, layout, rng):
    if layout == "cyclic":
        return cyclic_support(n, k, w)
    if layout != "random":
        raise ValueError(f"layout must be 'cyclic' or 'random', got {layout!r}")
    from .verify import hall_surplus_test

    pattern_shape = (n, k)
    for _ in range(RANDOM_LAYOUT_ATTEMPTS):
        rows, cols = random_support(n, k, w, rng)
        pattern = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=pattern_shape)
        if hall_surplus_test(pattern, n - k)[0]:
            return rows, cols
    # no random support passed: the cyclic one always does
    return cyclic_support(n, k, w)


def _gaussian_on(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], rng) -> sp.csr_array:
    vals = rng.standard_normal(rows.size)
    e = sp.csr_array((vals, (rows, cols)), shape=shape)
    e.sort_indices()
    return e


def _best_of(draw, trials: int, score) -> tuple[object, float]:
    if trials == 1:  # nothing to compare: skip the condition numbers
        return draw(), math.nan
    best, best_score = None, math.inf
    for _ in range(trials):
        cand = draw()
        sc = score(cand)
        if best is None or sc < best_score:
            best, best_score = cand, sc
    return best, best_score


def _check_trials(trials: int) -> int:
    if isinstance(trials, bool) or not isinstance(trials, int | np.integer) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    return int(trials)


def _nodes_uniform(n: int) -> np.ndarray:
    # SPEC 7 / issue: z_i = -1 + 2 i / n, i = 1..n (the last node is 1)
    return -1.0 + 2.0 * np.arange(1, n + 1) / n


def _nodes_chebyshev(n: int) -> np.ndarray:
    i = np.arange(1, n + 1)
    return np.cos((2 * i - 1) * np.pi / (2 * n))


def _chebyshev_table(z: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    # T_d(z) = cos(d arccos z) for |z| <= 1
    return np.cos(np.outer(np.arccos(np.clip(z, -1.0, 1.0)), degrees))


# ---------------------------------------------------------------------------
# matrix-vector


def _mv_score(e: sp.csr_array, cond_budget: float) -> float:
    from .verify import worst_condition_mv

    return worst_condition_mv(e, budget=cond_budget)


def _orthopoly_mv(n: int, k: int) -> np.ndarray:
    """Chebyshev code: row i is ``T_j(z_i)``, j < k, at Chebyshev nodes.

    The ``T_0`` column is scaled by ``1/sqrt(2)`` so that all columns have the
    same norm over the n nodes (discrete orthogonality of T_j).
    """
    t = _chebyshev_table(_nodes_chebyshev(n), np.arange(k))
    t[:, 0] /= math.sqrt(2.0)
    return t


def design_mv(
    n_workers: int,
    k: int,
    scheme: str = "sparse",
    *,
    capacities: Sequence[int] | None = None,
    stragglers: int | None = None,
    seed: int | np.random.Generator | None = None,
    trials: int = DEFAULT_TRIALS,
    layout: str = "random",
) -> MVCode:
    """Design a matrix-vector code for n workers and k row blocks.

    Parameters
    ----------
    n_workers : int
        Number of (physical) workers n.
    k : int
        Number of row blocks of A; ``1 <= k <= n`` (or ``<= sum(capacities)``).
    scheme : str
        One of ``"sparse"`` (default), ``"uncoded"``, ``"replication"``,
        ``"mds"``, ``"polynomial"``, ``"orthopoly"``.
    capacities : sequence of int, optional
        Coded blocks stored by each device (SPEC section 4); length
        ``n_workers``.  Only for ``"sparse"``.  The rows are then the
        ``sum(capacities)`` coded blocks, dealt round-robin to the devices
        (``owner``), with the cyclic layout over the rows.  The weight starts
        at the lower bound :func:`sparsecoded.bounds.hetero_weight` and grows
        until every set of ``stragglers`` silenced devices leaves a decodable
        system (checked exhaustively, structural rank, when there are at most
        20000 such sets).  When no lighter layout is proven this way, the
        virtual-worker weight ``mv_weight(sum(capacities), k)`` is used: then
        any ``k`` finished blocks decode, partial work of slow devices included.
    stragglers : int, optional
        With capacities: physical stragglers to tolerate (default the most
        possible).
    seed : int or numpy.random.Generator, optional
        Makes the random coefficients reproducible.
    trials : int
        Random coefficient draws; the one with the smallest worst-case
        condition number over responder sets is kept.
    layout : str
        Support of ``"sparse"``: ``"random"`` (default: a balanced random
        support, kept once the flow test proves it straggler-optimal, else the
        cyclic one) or ``"cyclic"`` (SPEC 2, straggler-optimal by
        construction).  Same weight.  The cyclic band is badly conditioned
        when a run of consecutive workers straggles, and more so as n grows
        (worst condition, n = 20, k = 16: 3.5e5 cyclic against 6.2e4 random;
        n = 1000, k = 900, sampled: 3.2e12 against 5.8e5), which is why the
        default is random: decoding multiplies rounding errors by that
        number.

    Returns
    -------
    MVCode

    Raises
    ------
    ValueError
        Infeasible parameters or an unknown scheme.

    Examples
    --------
    >>> code = design_mv(20, 16, seed=1)
    >>> code.weight, code.stragglers, code.encoding.shape
    (4, 4, (20, 16))
    """
    if capacities is not None:
        if scheme != "sparse":
            raise ValueError(f"capacities are supported for scheme 'sparse' only, got {scheme!r}")
        return _design_hetero(n_workers, k, capacities, stragglers, seed, trials)
    n, k = bounds.check_mv_params(n_workers, k)
    trials = _check_trials(trials)
    rng = np.random.default_rng(seed)
    own = np.arange(n)
    if scheme == "sparse":
        w = bounds.mv_weight(n, k)
        rows, cols = _sparse_support(n, k, w, layout, rng)
        budget = _cond_budget(trials)
        e, _ = _best_of(
            lambda: _gaussian_on(rows, cols, (n, k), rng), trials, lambda m: _mv_score(m, budget)
        )
        s = n - k
    elif scheme == "uncoded":
        rows = np.arange(k)
        e = sp.csr_array((np.ones(k), (rows, rows)), shape=(n, k))
        s = 0
    elif scheme == "replication":
        rows = np.arange(n)
        e = sp.csr_array((np.ones(n), (rows, rows % k)), shape=(n, k))
        s = n // k - 1
    elif scheme == "mds":
        budget = _cond_budget(trials)
        e, _ = _best_of(
            lambda: sp.csr_array(rng.standard_normal((n, k))),
            trials,
            lambda m: _mv_score(m, budget),
        )
        s = n - k
    elif scheme == "polynomial":
        e = sp.csr_array(np.vander(_nodes_uniform(n), k, increasing=True))
        s = n - k
    elif scheme == "orthopoly":
        e = sp.csr_array(_orthopoly_mv(n, k))
        s = n - k
    else:
        raise ValueError(f"scheme must be one of {MV_SCHEMES}, got {scheme!r}")
    e = _as_csr(e, "encoding")
    return MVCode(
        n_workers=n,
        k=k,
        stragglers=int(s),
        weight=int(_row_weights(e).max()),
        encoding=e,
        owner=own,
        capacities=None,
        scheme=scheme,
        generic=scheme in _GENERIC_MV,
    )


def _cond_budget(trials: int) -> float:
    # flops spent on condition numbers per trial: all subsets for small codes,
    # a handful of factorisations for large k (n = 1000, k = 900 must design in seconds)
    return max(1.0e8, 1.0e9 / trials)


def _hetero_rows(caps: tuple[int, ...]) -> np.ndarray:
    """Owner of each virtual row, spreading each device's rows around the cycle.

    Rows are dealt round-robin (device 0, 1, ..., then second rows, ...) so a
    device's rows are far apart in the cyclic layout and one slow device does
    not take out a run of consecutive windows.
    """
    owner = []
    left = list(caps)
    while any(left):
        for j, c in enumerate(left):
            if c:
                owner.append(j)
                left[j] -= 1
    return np.asarray(owner, dtype=np.int64)


def _design_hetero(n_workers, k, capacities, stragglers, seed, trials) -> MVCode:
    from .verify import hetero_decodable_supports, worst_condition_hetero

    n = bounds._check_int("n_workers", n_workers)
    if n < 1:
        raise ValueError(f"n_workers must be >= 1, got {n}")
    caps = bounds.validate_capacities(capacities, k)
    if len(caps) != n:
        raise ValueError(f"capacities must have length n_workers = {n}, got {len(caps)}")
    k = int(k)
    s = bounds.hetero_stragglers(caps, k) if stragglers is None else int(stragglers)
    lower = bounds.hetero_weight(caps, k, s)  # also validates s
    trials = _check_trials(trials)
    rng = np.random.default_rng(seed)
    total = sum(caps)
    owner = _hetero_rows(caps)
    w_virtual = bounds.mv_weight(total, k)
    # Try weights from the lower bound up; a lighter layout is kept only when
    # checked over every set of s physical stragglers. The virtual design at
    # w_virtual always works (any k rows decode) and is proven by flow.
    chosen = w_virtual
    for w in range(lower, w_virtual):
        rows, cols = cyclic_support(total, k, w)
        ok = hetero_decodable_supports(rows, cols, owner, total, k, s, n)
        if ok:
            chosen = w
            break
    rows, cols = cyclic_support(total, k, chosen)
    e, _ = _best_of(
        lambda: _gaussian_on(rows, cols, (total, k), rng),
        trials,
        lambda m: worst_condition_hetero(m, owner, n, s),
    )
    e = _as_csr(e, "encoding")
    return MVCode(
        n_workers=n,
        k=k,
        stragglers=s,
        weight=int(_row_weights(e).max()),
        encoding=e,
        owner=owner,
        capacities=caps,
        scheme="sparse",
        generic=True,
    )


# ---------------------------------------------------------------------------
# matrix-matrix


def design_mm(
    n_workers: int,
    k_a: int,
    k_b: int,
    scheme: str = "sparse",
    *,
    seed: int | np.random.Generator | None = None,
    trials: int = DEFAULT_TRIALS,
) -> MMCode:
    """Design a matrix-matrix code for ``A @ B`` on n workers.

    Parameters
    ----------
    n_workers : int
        Number of workers n.
    k_a, k_b : int
        Blocks of A (by rows) and B (by columns); ``k_a k_b <= n``.
    scheme : str
        ``"sparse"`` (default), ``"uncoded"``, ``"replication"``, ``"mds"``,
        ``"polynomial"``, ``"orthopoly"`` or ``"rkrp"``.
    seed : int or numpy.random.Generator, optional
    trials : int
        Coefficient draws; the best by worst-case condition number is kept.

    Returns
    -------
    MMCode
        For ``"sparse"``, ``fallback`` tells whether the minimal pair
        :func:`sparsecoded.bounds.mm_weights` was replaced by the next one.

    Notes
    -----
    The ``"sparse"`` layout (SPEC section 3): workers ``0 .. k_a k_b - 1`` sit
    one per cell ``(p, q)`` of the ``k_a x k_b`` torus; each of the ``s``
    extra workers goes, greedily, to the cell whose windows cover the most
    cells, A-blocks and B-blocks still short of the necessary counts.  A
    worker at ``(p, q)`` mixes A-blocks ``p .. p + w_a - 1`` and B-blocks
    ``q .. q + w_b - 1`` (cyclically) with Gaussian coefficients.  Since the
    rows ``a_i kron b_i`` are rank one, Hall's condition does not settle
    decodability, so each candidate is checked by rank: adversarial and
    random responder sets first, then all of them while there are at most
    ``MM_DESIGN_SUBSETS`` (else 2000 random ones).  Weight pairs are tried in
    the order of :func:`sparsecoded.bounds.mm_feasible_pairs`; pairs that fail
    :func:`sparsecoded.bounds.mm_counting_ok` are provably infeasible and
    skipped.  Measured: for every n <= 30 and ``k_a k_b <= n`` the result is
    ``mm_weights(n, k_a, k_b, refined=True)``; it differs from SPEC's
    ``mm_weights(n, k_a, k_b)`` only where SPEC's pair is infeasible.

    Examples
    --------
    >>> code = design_mm(24, 4, 5, seed=0, trials=1)
    >>> (code.weight_a, code.weight_b), code.stragglers, code.fallback
    ((2, 3), 4, False)
    """
    n, ka, kb = bounds.check_mm_params(n_workers, k_a, k_b)
    trials = _check_trials(trials)
    rng = np.random.default_rng(seed)
    big_k = ka * kb
    s = n - big_k
    target = None
    fallback = False
    reason = None
    if scheme == "sparse":
        target = bounds.mm_weights(n, ka, kb)
        ea, eb, pair, skipped = _sparse_mm_layout(n, ka, kb, rng, trials)
        fallback = pair != target
        reason = "; ".join(skipped) if fallback else None
    elif scheme == "uncoded":
        cells = np.arange(big_k)
        ea = sp.csr_array((np.ones(big_k), (cells, cells // kb)), shape=(n, ka))
        eb = sp.csr_array((np.ones(big_k), (cells, cells % kb)), shape=(n, kb))
        s = 0
    elif scheme == "replication":
        cells = np.arange(n) % big_k
        rows = np.arange(n)
        ea = sp.csr_array((np.ones(n), (rows, cells // kb)), shape=(n, ka))
        eb = sp.csr_array((np.ones(n), (rows, cells % kb)), shape=(n, kb))
        s = n // big_k - 1
    elif scheme == "mds":
        ea, eb = _best_pair(
            lambda: (rng.standard_normal((n, ka)), rng.standard_normal((n, kb))), trials
        )
    elif scheme == "rkrp":

        def draw():
            a = np.zeros((n, ka))
            b = np.zeros((n, kb))
            cells = np.arange(big_k)
            a[cells, cells // kb] = 1.0
            b[cells, cells % kb] = 1.0
            a[big_k:] = rng.standard_normal((s, ka))
            b[big_k:] = rng.standard_normal((s, kb))
            return a, b

        ea, eb = _best_pair(draw, trials)
    elif scheme == "polynomial":
        z = _nodes_uniform(n)
        ea = z[:, None] ** (np.arange(ka) * kb)[None, :]
        eb = z[:, None] ** np.arange(kb)[None, :]
    elif scheme == "orthopoly":
        ea, eb = _orthopoly_mm(n, ka, kb)
    else:
        raise ValueError(f"scheme must be one of {MM_SCHEMES}, got {scheme!r}")
    ea = _as_csr(ea, "encoding_a")
    eb = _as_csr(eb, "encoding_b")
    return MMCode(
        n_workers=n,
        k_a=ka,
        k_b=kb,
        stragglers=int(s),
        weight_a=int(_row_weights(ea).max()),
        weight_b=int(_row_weights(eb).max()),
        encoding_a=ea,
        encoding_b=eb,
        scheme=scheme,
        target_weights=target,
        fallback=fallback,
        fallback_reason=reason,
    )


def _orthopoly_mm(n: int, ka: int, kb: int) -> tuple[np.ndarray, np.ndarray]:
    """Chebyshev MM code at Chebyshev nodes.

    ``a_ip = T_p(z_i)`` for ``p < k_a`` and ``b_iq = T_{q k_a}(z_i)`` for
    ``q < k_b``.  Since ``T_p T_{q k_a} = (T_{q k_a + p} + T_{|q k_a - p|}) / 2``,
    the products span the polynomials of degree ``< k_a k_b``, so any
    ``k_a k_b`` distinct nodes decode.  Both ``T_0`` columns are scaled by
    ``1/sqrt(2)`` (equal column norms under discrete orthogonality).
    """
    z = _nodes_chebyshev(n)
    ta = _chebyshev_table(z, np.arange(ka))
    tb = _chebyshev_table(z, np.arange(kb) * ka)
    ta[:, 0] /= math.sqrt(2.0)
    tb[:, 0] /= math.sqrt(2.0)
    return ta, tb


def _mm_score(a: np.ndarray, b: np.ndarray, budget: float = 2.0e9) -> float:
    from .verify import worst_condition_mv

    rows = (a[:, :, None] * b[:, None, :]).reshape(a.shape[0], -1)
    return worst_condition_mv(sp.csr_array(rows), budget=budget)


def _best_pair(draw, trials: int) -> tuple[np.ndarray, np.ndarray]:
    best, _ = _best_of(draw, trials, lambda ab: _mm_score(*ab, budget=_cond_budget(trials)))
    return best


# Search effort of the sparse MM layout: placements tried per weight pair, and
# how many weight pairs (best first) before giving up to the dense windows.
MM_ATTEMPTS = 12
MM_MAX_PAIRS = 6
# Exhaustive verification inside the design only up to this many subsets;
# certify() goes up to its own max_subsets.
MM_DESIGN_SUBSETS = 20_000


def _mm_cover(cells: np.ndarray, ka: int, kb: int, wa: int, wb: int):
    """Coverage counts of product cells, A-blocks and B-blocks by window workers."""
    cov = np.zeros((ka, kb), dtype=np.int64)
    for p, q in cells:
        rows = (p + np.arange(wa)) % ka
        cols = (q + np.arange(wb)) % kb
        cov[np.ix_(rows, cols)] += 1
    cov_a = np.zeros(ka, dtype=np.int64)
    cov_b = np.zeros(kb, dtype=np.int64)
    for p, q in cells:
        cov_a[(p + np.arange(wa)) % ka] += 1
        cov_b[(q + np.arange(wb)) % kb] += 1
    return cov, cov_a, cov_b


def _mm_place(n, ka, kb, wa, wb, rng, randomize: bool) -> np.ndarray | None:
    """Cells of all n workers: one per torus cell, then s extra by greedy search.

    Each extra worker goes to the cell whose windows cover the most
    still-deficient product cells, A-blocks and B-blocks (SPEC 3's three
    necessary conditions); ties are broken at random when ``randomize``.
    Returns None if the conditions are not all met.
    """
    big_k = ka * kb
    s = n - big_k
    base = np.array([(p, q) for p in range(ka) for q in range(kb)], dtype=np.int64)
    need, need_a, need_b = s + 1, kb + s, ka + s
    cells = [tuple(c) for c in base]
    cov, cov_a, cov_b = _mm_cover(base, ka, kb, wa, wb)
    for _ in range(s):
        def_cell = cov < need
        def_a = cov_a < need_a
        def_b = cov_b < need_b
        best, best_gain = [], -1.0
        for p in range(ka):
            rows = (p + np.arange(wa)) % ka
            ga = def_a[rows].sum()
            for q in range(kb):
                cols = (q + np.arange(wb)) % kb
                gain = def_cell[np.ix_(rows, cols)].sum() + ga + def_b[cols].sum()
                # prefer the least covered windows among equal gains
                gain = gain - 1e-3 * cov[np.ix_(rows, cols)].sum() / (wa * wb)
                if gain > best_gain + 1e-12:
                    best, best_gain = [(p, q)], gain
                elif abs(gain - best_gain) <= 1e-12:
                    best.append((p, q))
        p, q = best[rng.integers(len(best))] if randomize else best[0]
        cells.append((p, q))
        rows = (p + np.arange(wa)) % ka
        cols = (q + np.arange(wb)) % kb
        cov[np.ix_(rows, cols)] += 1
        cov_a[rows] += 1
        cov_b[cols] += 1
    if (cov < need).any() or (cov_a < need_a).any() or (cov_b < need_b).any():
        return None
    return np.asarray(cells, dtype=np.int64)


def _mm_spread(n, ka, kb, wa, wb) -> np.ndarray | None:
    """Cells at evenly spread starts ``floor(i k_a k_b / n)`` (row-major on the torus).

    With ``k_a = 1`` or ``k_b = 1`` this is exactly SPEC 2's matrix-vector
    layout, which the greedy placement does not always find.
    """
    c = (np.arange(n, dtype=np.int64) * ka * kb) // n
    cells = np.stack([c // kb, c % kb], axis=1)
    s = n - ka * kb
    cov, cov_a, cov_b = _mm_cover(cells, ka, kb, wa, wb)
    if (cov < s + 1).any() or (cov_a < kb + s).any() or (cov_b < ka + s).any():
        return None
    return cells


def _mm_windows(cells, ka, kb, wa, wb, rng) -> tuple[np.ndarray, np.ndarray]:
    n = cells.shape[0]
    a = np.zeros((n, ka))
    b = np.zeros((n, kb))
    for i, (p, q) in enumerate(cells):
        a[i, (p + np.arange(wa)) % ka] = rng.standard_normal(wa)
        b[i, (q + np.arange(wb)) % kb] = rng.standard_normal(wb)
    return a, b


def _mm_layout_ok(a: np.ndarray, b: np.ndarray, rng, *, exhaustive_limit: int) -> bool:
    from .verify import _conds, _exhaustive, _mm_adversarial_arrays, _sample_subsets

    rows = (a[:, :, None] * b[:, None, :]).reshape(a.shape[0], -1)
    n, big_k = rows.shape
    # cheap screening first: adversarial sets, then random ones
    adv = _mm_adversarial_arrays(a != 0, b != 0, n - big_k, rng, variants=2)
    if not np.isfinite(_conds(rows, adv)).all():
        return False
    if not np.isfinite(_conds(rows, _sample_subsets(n, big_k, 300, rng))).all():
        return False
    if math.comb(n, big_k) <= exhaustive_limit:
        return _exhaustive(rows, big_k, keep=0)[3] == 0
    return bool(np.isfinite(_conds(rows, _sample_subsets(n, big_k, 2000, rng))).all())


def _sparse_mm_layout(n, ka, kb, rng, trials):
    """Minimum-weight window layout (SPEC 3), verified by rank; falls back pair by pair."""
    pairs = bounds.mm_feasible_pairs(n, ka, kb)
    skipped = []
    for wa, wb in [*pairs[:MM_MAX_PAIRS], (ka, kb)]:
        if not bounds.mm_counting_ok(n, ka, kb, wa, wb):
            skipped.append(
                f"({wa}, {wb}) is infeasible (counting condition, see bounds.mm_counting_ok)"
            )
            continue
        for attempt in range(-1, MM_ATTEMPTS):
            if attempt < 0:
                cells = _mm_spread(n, ka, kb, wa, wb)
            else:
                cells = _mm_place(n, ka, kb, wa, wb, rng, randomize=attempt > 0)
            if cells is None:
                continue
            a, b = _mm_windows(cells, ka, kb, wa, wb, rng)
            if not _mm_layout_ok(a, b, rng, exhaustive_limit=MM_DESIGN_SUBSETS):
                continue
            if trials > 1:
                budget = _cond_budget(trials)
                cands = [(a, b)] + [
                    _mm_windows(cells, ka, kb, wa, wb, rng) for _ in range(trials - 1)
                ]
                scores = [_mm_score(x, y, budget) for x, y in cands]
                a, b = cands[int(np.argmin(scores))]
            return a, b, (wa, wb), skipped
        skipped.append(f"({wa}, {wb}): no verified layout found by the window search")
    raise RuntimeError(f"no decodable MM layout found for n={n}, k_a={ka}, k_b={kb}")
