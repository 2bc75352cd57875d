"""Lower bounds on the weight of straggler-optimal codes (docs/theory.md sections 2, 5, 6).

The *weight* of a worker is the number of data blocks mixed into its coded
block; the weight of a code is the largest worker weight.  These functions give
the smallest weight any code with the best possible straggler tolerance can
have.  The designs in :mod:`sparsecoded.design.mv` and :mod:`sparsecoded.design.mm` meet them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "check_mm_params",
    "coded_density",
    "check_mv_params",
    "fine_mv_load",
    "fine_mv_weight",
    "mm_load_bounds",
    "hetero_stragglers",
    "hetero_weight",
    "mm_conditions",
    "mm_counting_ok",
    "mm_feasible_pairs",
    "mm_weights",
    "mv_weight",
    "validate_capacities",
]


def _check_int(name: str, value: Any) -> int:
    ok = not isinstance(value, bool) and isinstance(value, int | _np_integer())
    if not ok:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _np_integer() -> type:
    import numpy as np

    return np.integer


def check_mv_params(n_workers: int, k: int) -> tuple[int, int]:
    """Validate ``(n_workers, k)`` for a matrix-vector code.

    Parameters
    ----------
    n_workers : int
        Number of workers n, at least 1.
    k : int
        Number of row blocks, ``1 <= k <= n_workers``.

    Returns
    -------
    (int, int)
        The two values as Python ints.

    Raises
    ------
    ValueError
        If a value is not an integer or out of range; the message names the
        limit and the value.

    Examples
    --------
    >>> check_mv_params(20, 16)
    (20, 16)
    """
    n = _check_int("n_workers", n_workers)
    k = _check_int("k", k)
    if n < 1:
        raise ValueError(f"n_workers must be >= 1, got {n}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"k must be <= n_workers = {n}, got k = {k}")
    return n, k


def check_mm_params(n_workers: int, k_a: int, k_b: int) -> tuple[int, int, int]:
    """Validate ``(n_workers, k_a, k_b)`` for a matrix-matrix code.

    Parameters
    ----------
    n_workers : int
        Number of workers n.
    k_a, k_b : int
        Number of blocks of A (by rows) and of B (by columns); ``k_a k_b <= n``.

    Returns
    -------
    (int, int, int)

    Raises
    ------
    ValueError
        If ``k_a < 1``, ``k_b < 1`` or ``k_a * k_b > n_workers``.

    Examples
    --------
    >>> check_mm_params(24, 4, 5)
    (24, 4, 5)
    """
    n = _check_int("n_workers", n_workers)
    ka = _check_int("k_a", k_a)
    kb = _check_int("k_b", k_b)
    if n < 1:
        raise ValueError(f"n_workers must be >= 1, got {n}")
    if ka < 1:
        raise ValueError(f"k_a must be >= 1, got {ka}")
    if kb < 1:
        raise ValueError(f"k_b must be >= 1, got {kb}")
    if ka * kb > n:
        raise ValueError(f"k_a * k_b must be <= n_workers = {n}, got k_a * k_b = {ka * kb}")
    return n, ka, kb


def mv_weight(n_workers: int, k: int) -> int:
    """Smallest weight of a straggler-optimal matrix-vector code.

    With ``s = n - k`` stragglers every block must reach ``s + 1`` workers,
    so the ``n`` weights sum to at least ``k (s + 1)``:
    ``w >= ceil(k (n - k + 1) / n)``.

    Parameters
    ----------
    n_workers : int
        Number of workers n.
    k : int
        Number of blocks, ``1 <= k <= n``.

    Returns
    -------
    int
        ``ceil(k (n - k + 1) / n)``.

    Examples
    --------
    >>> [mv_weight(20, k) for k in (1, 10, 16, 18, 20)]
    [1, 6, 4, 3, 1]
    """
    n, k = check_mv_params(n_workers, k)
    return -(-k * (n - k + 1) // n)


def mm_conditions(n_workers: int, k_a: int, k_b: int) -> tuple[int, int, int]:
    """The three necessary conditions of docs/theory.md section 5 as lower limits.

    Parameters
    ----------
    n_workers, k_a, k_b : int
        Workers and the block counts of A and B.

    Returns
    -------
    (int, int, int)
        ``(product_min, w_a_min, w_b_min)``: a feasible pair needs
        ``w_a * w_b >= product_min``, ``w_a >= w_a_min``, ``w_b >= w_b_min``.

    Examples
    --------
    >>> mm_conditions(24, 4, 5)
    (5, 2, 2)
    """
    n, ka, kb = check_mm_params(n_workers, k_a, k_b)
    s = n - ka * kb
    product = -(-ka * kb * (s + 1) // n)
    wa = -(-ka * (kb + s) // n)
    wb = -(-kb * (ka + s) // n)
    return product, wa, wb


def mm_counting_ok(n_workers: int, k_a: int, k_b: int, w_a: int, w_b: int) -> bool:
    """A fourth necessary condition, the refinement of docs/theory.md section 5.

    Fix a B-block q and let ``W_q`` be the workers holding it.  Each of the
    ``k_a`` cells ``(p, q)`` needs ``s + 1`` of them (condition 1 per cell),
    and one worker reaches at most ``w_a`` of these cells, so
    ``|W_q| >= ceil(k_a (s + 1) / w_a)``; condition 3 also asks
    ``|W_q| >= k_a + s``.  Summing over q, ``n w_b >= k_b max(k_a + s,
    ceil(k_a (s + 1) / w_a))``, and symmetrically for A.  docs/theory.md section 5's three
    conditions are the relaxation without the ceiling; with it some pairs
    are infeasible although those admit them (docs/theory.md section 5: n = 19, 3 x 5 gives
    (2, 2), but ``19 * 2 < 5 * ceil(3 * 5 / 2) = 40``).

    Parameters
    ----------
    n_workers, k_a, k_b, w_a, w_b : int

    Returns
    -------
    bool

    Examples
    --------
    >>> mm_counting_ok(19, 3, 5, 2, 2), mm_counting_ok(19, 3, 5, 2, 3)
    (False, True)
    """
    s = n_workers - k_a * k_b
    need_b = k_b * max(k_a + s, -(-k_a * (s + 1) // w_a))
    need_a = k_a * max(k_b + s, -(-k_b * (s + 1) // w_b))
    return n_workers * w_b >= need_b and n_workers * w_a >= need_a


def mm_feasible_pairs(
    n_workers: int, k_a: int, k_b: int, *, refined: bool = False
) -> list[tuple[int, int]]:
    """All pairs meeting the three conditions, best first.

    Order: smallest product, then the more balanced pair (smaller
    ``|w_a - w_b|``), then the pair whose storage fractions ``w_a / k_a`` and
    ``w_b / k_b`` are closer, then the smaller ``w_a``.

    Parameters
    ----------
    n_workers, k_a, k_b : int
    refined : bool
        Also require :func:`mm_counting_ok` (the exact necessary conditions;
        the three of docs/theory.md section 5 alone when False).

    Returns
    -------
    list of (int, int)

    Examples
    --------
    >>> mm_feasible_pairs(24, 4, 5)[:3]
    [(2, 3), (3, 2), (2, 4)]
    """
    product, lo_a, lo_b = mm_conditions(n_workers, k_a, k_b)
    pairs = [
        (wa, wb)
        for wa in range(lo_a, k_a + 1)
        for wb in range(lo_b, k_b + 1)
        if wa * wb >= product and (not refined or mm_counting_ok(n_workers, k_a, k_b, wa, wb))
    ]
    return sorted(
        pairs,
        key=lambda p: (p[0] * p[1], abs(p[0] - p[1]), abs(p[0] / k_a - p[1] / k_b), p[0]),
    )


def mm_weights(n_workers: int, k_a: int, k_b: int, *, refined: bool = False) -> tuple[int, int]:
    """Minimal weight pair ``(w_a, w_b)`` for a straggler-optimal matrix-matrix code.

    The pair with the smallest product ``w_a w_b`` that meets all three
    necessary conditions of docs/theory.md section 5 (see :func:`mm_conditions`); ties
    go to the more balanced pair (see :func:`mm_feasible_pairs`).  Condition 1
    alone can be unattainable: at n = 24, 4 x 5 it asks for a product of 5,
    but no pair with ``w_a, w_b >= 2`` has product 5.

    The three conditions (docs/theory.md section 5) are not sufficient:
    :func:`mm_counting_ok` is a fourth necessary one.  ``refined=True``
    applies it too (the value :func:`sparsecoded.design_mm` then reaches).

    Parameters
    ----------
    n_workers : int
        Number of workers n.
    k_a, k_b : int
        Block counts, ``k_a k_b <= n``.
    refined : bool
        Include the counting condition of :func:`mm_counting_ok`.

    Returns
    -------
    (int, int)

    Examples
    --------
    >>> mm_weights(24, 4, 5)
    (2, 3)
    >>> mm_weights(20, 4, 5)
    (1, 1)
    >>> mm_weights(19, 3, 5), mm_weights(19, 3, 5, refined=True)
    ((2, 2), (2, 3))
    """
    return mm_feasible_pairs(n_workers, k_a, k_b, refined=refined)[0]


def validate_capacities(capacities: Sequence[int], k: int) -> tuple[int, ...]:
    """Check a heterogeneous capacity vector against ``k`` blocks.

    Parameters
    ----------
    capacities : sequence of int
        Coded blocks each device stores; non-negative integers.
    k : int
        Number of data blocks.

    Returns
    -------
    tuple of int

    Raises
    ------
    ValueError
        Non-integer or negative entries, an empty vector, or a total below k.

    Examples
    --------
    >>> validate_capacities([1, 2, 3], 4)
    (1, 2, 3)
    """
    k = _check_int("k", k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    caps: list[Any] = list(capacities)  # checked one by one below
    if not caps:
        raise ValueError("capacities must name at least 1 device, got an empty sequence")
    out = []
    for j, c in enumerate(caps):
        if isinstance(c, bool) or not isinstance(c, int | _np_integer()):
            if isinstance(c, float) and c.is_integer():
                c = int(c)
            else:
                raise ValueError(f"capacities must be integers, got capacities[{j}] = {c!r}")
        if c < 0:
            raise ValueError(f"capacities must be >= 0, got capacities[{j}] = {c}")
        out.append(int(c))
    total = sum(out)
    if total < k:
        raise ValueError(f"capacities must hold at least k = {k} blocks in total, got {total}")
    return tuple(out)


def hetero_stragglers(capacities: Sequence[int], k: int) -> int:
    """Most physical stragglers any code on these devices can tolerate.

    The adversary silences the ``s`` largest devices; the rest must still
    hold ``k`` coded blocks.  So ``s`` is the largest integer with
    ``sum of the n - s smallest capacities >= k``.

    Parameters
    ----------
    capacities : sequence of int
        Coded blocks per device.
    k : int
        Number of data blocks.

    Returns
    -------
    int

    Examples
    --------
    >>> hetero_stragglers([1, 1, 1, 2, 3], 4)
    1
    >>> hetero_stragglers([1, 1, 1, 1, 1, 1], 4)
    2
    """
    caps = sorted(validate_capacities(capacities, k))
    s = 0
    # remove the largest devices one by one while k blocks remain
    remaining = sum(caps)
    for c in reversed(caps):
        if remaining - c < k:
            break
        remaining -= c
        s += 1
    return s


def hetero_weight(capacities: Sequence[int], k: int, stragglers: int | None = None) -> int:
    """Lower bound on the row weight of a code on heterogeneous devices.

    Device j stores ``c_j`` coded blocks (rows of the encoding); the code
    must decode from the rows of any ``n - s`` devices.

    Bound: ``w >= ceil(k (s + 1) / C)`` with ``C = sum_j c_j``.

    Proof sketch.  Fix a block ``A_l``.  If the rows that mix ``A_l`` all
    sit on at most ``s`` devices, let exactly those devices straggle: no
    surviving row carries ``A_l``, so it cannot be decoded.  Hence every
    block appears in rows of at least ``s + 1`` distinct devices, so in at
    least ``s + 1`` rows.  Summing over the ``k`` blocks, the total weight of
    the ``C`` rows is at least ``k (s + 1)``, and the largest row weight is at
    least the average.  With all ``c_j = 1`` this is the homogeneous bound
    :func:`mv_weight`.  The bound is necessary, not always attainable; the
    virtual-worker design (``C`` homogeneous workers, any ``k`` rows decode)
    has weight ``mv_weight(C, k) = ceil(k (C - k + 1) / C)``, which is at least
    this bound because ``C - k >= s`` (the ``n - s`` surviving devices hold
    ``k`` rows and each silenced device holds at least one).

    Parameters
    ----------
    capacities : sequence of int
        Coded blocks per device.
    k : int
        Number of data blocks.
    stragglers : int, optional
        Physical stragglers to tolerate; default the most possible,
        :func:`hetero_stragglers`.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``stragglers`` exceeds what the capacities allow.

    Examples
    --------
    >>> hetero_weight([2, 2, 2, 2], 5), mv_weight(8, 5)
    (2, 3)
    """
    caps = validate_capacities(capacities, k)
    s_max = hetero_stragglers(caps, k)
    s = s_max if stragglers is None else _check_int("stragglers", stragglers)
    if s < 0:
        raise ValueError(f"stragglers must be >= 0, got {s}")
    if s > s_max:
        raise ValueError(
            f"stragglers must be <= {s_max} for capacities {list(caps)} and k = {k} "
            f"(the remaining devices must hold k blocks), got {s}"
        )
    return -(-k * (s + 1) // sum(caps))


def coded_density(density: float, weight: int) -> float:
    """Expected density of a coded block mixing ``weight`` blocks of density p.

    An entry of the mix is nonzero when one of the ``weight`` blocks has it
    (cancellation has probability zero): ``1 - (1 - p)^weight``, about
    ``weight * p`` for small p (docs/theory.md section 1).

    Parameters
    ----------
    density : float
        Density p of each data block, in [0, 1].
    weight : int
        Number of blocks mixed; 0 gives an empty block.

    Returns
    -------
    float

    Examples
    --------
    >>> round(coded_density(0.01, 4) / coded_density(0.01, 16), 3)
    0.265
    """
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    # -expm1(w log1p(-p)) = 1 - (1 - p)^w without losing a tiny p to rounding
    return 1.0 if density == 1.0 else float(-math.expm1(weight * math.log1p(-density)))


# ---------------------------------------------------------------------------
# finer partitions (docs/theory.md sections 11 and 12)


def _tolerance(n: int, k: int, stragglers: int | None) -> int:
    s = n - k if stragglers is None else _check_int("stragglers", stragglers)
    if not 0 <= s <= n - k:
        raise ValueError(f"stragglers must be in [0, n - k = {n - k}], got {s}")
    return s


def fine_mv_weight(n_workers: int, k: int, blocks: int, stragglers: int | None = None) -> int:
    """Lower bound on the largest total weight per device, A cut into ``blocks`` sub-blocks.

    Whatever the storage and the number of rows per device: every sub-block
    must sit in rows of ``s + 1`` devices (else silencing them loses it), so
    the devices' total weights sum to at least ``blocks (s + 1)`` and the
    largest is at least ``ceil(blocks (s + 1) / n)`` (docs/theory.md
    Theorem 11.1).  A device of total weight W holds about ``W / blocks`` of
    A's nonzeros.

    Parameters
    ----------
    n_workers, k : int
        Devices, and the storage parameter (each stores ``1 / k`` of A);
        ``k`` bounds the tolerance: ``s <= n - k``.
    blocks : int
        Sub-blocks; a multiple of k, so that each device's ``blocks / k``
        rows are its storage.
    stragglers : int, optional
        Default ``n - k``.

    Returns
    -------
    int

    Examples
    --------
    >>> fine_mv_weight(24, 20, 20), fine_mv_weight(24, 20, 120)   # coarse: 5 of 20
    (5, 25)
    """
    n, k = check_mv_params(n_workers, k)
    d = _check_int("blocks", blocks)
    if d < k or d % k:
        raise ValueError(f"blocks must be a positive multiple of k = {k}, got {d}")
    s = _tolerance(n, k, stragglers)
    return -(-d * (s + 1) // n)


def fine_mv_load(n_workers: int, k: int, stragglers: int | None = None) -> float:
    """The limit of :func:`fine_mv_weight` ``/ blocks``: ``(s + 1) / n`` of A per device.

    Attained exactly once ``n`` divides ``blocks (s + 1)`` (docs/theory.md
    section 11.2); the coarse partition gives ``ceil(k (s + 1) / n) / k``.

    Examples
    --------
    >>> fine_mv_load(24, 20), mv_weight(24, 20) / 20
    (0.20833333333333334, 0.25)
    """
    n, k = check_mv_params(n_workers, k)
    return (_tolerance(n, k, stragglers) + 1) / n


def mm_load_bounds(
    n_workers: int,
    k_a: int,
    k_b: int,
    stragglers: int | None = None,
    nnz: tuple[float, float] = (1.0, 1.0),
) -> tuple[float, float]:
    """Lower bounds on the nonzeros per device of any MM code, any partition.

    With ``x_d``, ``y_d`` the fractions of A and B a device holds (total
    slot weight over the sub-block count), docs/theory.md Theorem 12.1 proves
    ``sum_d x_d y_d >= s + 1`` (every product cell on s + 1 devices),
    ``sum_d x_d >= k_b + s`` and ``sum_d y_d >= k_a + s`` (every sub-block of A
    resp. B on enough devices to recover its row of cells).  Hence, with
    ``N_A, N_B = nnz``:

    - the largest device holds at least ``2 sqrt(N_A N_B (s + 1) / n)`` (and
      at least the mean bound), and
    - the mean over devices is at least ``(N_A (k_b + s) + N_B (k_a + s)) / n``.

    Parameters
    ----------
    n_workers, k_a, k_b : int
    stragglers : int, optional
        Default ``n - k_a k_b``.
    nnz : (float, float)
        Nonzeros of A and of B (default 1 each: fractions).

    Returns
    -------
    (float, float)
        ``(largest, mean)`` lower bounds, in the units of ``nnz``.

    Examples
    --------
    >>> hi, mean = mm_load_bounds(24, 4, 5, nnz=(900_000, 810_000))
    >>> round(hi), round(mean)
    (779423, 607500)
    """
    n, ka, kb = check_mm_params(n_workers, k_a, k_b)
    s = _tolerance(n, ka * kb, stragglers)
    na, nb = (float(v) for v in nnz)
    mean = (na * (kb + s) + nb * (ka + s)) / n
    largest = max(2.0 * math.sqrt(na * nb * (s + 1) / n), mean)
    return largest, mean
