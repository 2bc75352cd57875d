"""Matrix-matrix constructions: :func:`design_mm`.

Schemes are those of :mod:`sparsecoded.design.mv` plus ``"rkrp"``: systematic
first ``k_a k_b`` workers, dense random parity workers.  The sparse design
places windows of the minimal weight pair (docs/theory.md section 5) and
verifies each layout by rank over responder sets.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from . import authors, bounds, fine
from .codes import MM_EXTRA_SCHEMES, MM_SCHEMES, MMCode, as_encoding, row_weights
from .coefficients import best_of, chebyshev_table, check_trials, nodes_chebyshev, nodes_uniform
from .mv import DEFAULT_TRIALS, cond_budget
from .responders import (
    classes_of,
    conditions,
    hall_surplus_test,
    mm_adversarial_sets,
    worst_condition_mv,
)

__all__ = ["design_mm"]


def design_mm(
    n_workers: int,
    k_a: int,
    k_b: int,
    scheme: str = "sparse",
    *,
    seed: int | np.random.Generator | None = None,
    trials: int = DEFAULT_TRIALS,
    blocks: tuple[int, int] | None = None,
    stragglers: int | None = None,
    nnz: tuple[float, float] = (1.0, 1.0),
    beta: tuple[int, int] | None = None,
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
        Also ``"coarse"`` (the sparse design on the coarse partition),
        ``"fine"`` (the best finer partition found, even if not lighter than
        the coarse one), and the seed authors' ``"unified"`` and
        ``"beta-level"`` (docs/theory.md section 13).
    seed : int or numpy.random.Generator, optional
    trials : int
        Coefficient draws; the best by worst-case condition number is kept.
    blocks : (int, int), optional
        ``"sparse"`` only: the partition ``(blocks_a, blocks_b)``, multiples
        of ``(k_a, k_b)`` with one side coarse.  Default: the lightest
        partition found (docs/theory.md section 12): a finer one when it
        holds strictly fewer expected nonzeros per device than the coarse
        minimal pair and its layout is proved, else the coarse code.
        ``(k_a, k_b)`` is the coarse code.
    stragglers : int, optional
        ``"sparse"``/``"fine"``: tolerate only s < n - k_a k_b devices, for a
        lighter code (the tolerance knob; the coarse code is then not
        considered).
    nnz : (float, float)
        Relative nonzeros of A and B, for choosing the partition (default
        equal).
    beta : (int, int), optional
        ``"beta-level"``: the levels ``(beta_a, beta_b)`` (default ``(1, 1)``).

    Returns
    -------
    MMCode
        For the coarse ``"sparse"``, ``fallback`` tells whether the minimal
        pair :func:`sparsecoded.design.bounds.mm_weights` was replaced by the
        next one.  Codes on a finer partition have ``owner``, ``slot_a`` and
        ``slot_b`` (several products per device).

    Notes
    -----
    The ``"sparse"`` layout (docs/theory.md section 5): workers ``0 .. k_a k_b - 1`` sit
    one per cell ``(p, q)`` of the ``k_a x k_b`` torus; each of the ``s``
    extra workers goes, greedily, to the cell whose windows cover the most
    cells, A-blocks and B-blocks still short of the necessary counts.  A
    worker at ``(p, q)`` mixes A-blocks ``p .. p + w_a - 1`` and B-blocks
    ``q .. q + w_b - 1`` (cyclically) with Gaussian coefficients.  Each
    candidate is decided by the flow test on the pattern of the rows
    ``a_i kron b_i``, exact for generic coefficients (docs/theory.md
    Theorem 5.1), and the draw screened on adversarial responder sets.
    Weight pairs are tried in
    the order of :func:`sparsecoded.design.bounds.mm_feasible_pairs`; pairs that fail
    :func:`sparsecoded.design.bounds.mm_counting_ok` are provably infeasible and
    skipped.  Measured: for every n <= 30 and ``k_a k_b <= n`` the result is
    ``mm_weights(n, k_a, k_b, refined=True)``; it differs from docs/theory.md section 5's
    ``mm_weights(n, k_a, k_b)`` (three conditions) only where that pair is infeasible.

    Examples
    --------
    >>> code = design_mm(24, 4, 5, blocks=(4, 5), seed=0, trials=1)
    >>> (code.weight_a, code.weight_b), code.stragglers, code.fallback
    ((2, 3), 4, False)
    >>> fine = design_mm(24, 4, 5, seed=0, trials=1)
    >>> (fine.blocks_a, fine.blocks_b), fine.n_rows, fine.stragglers
    ((4, 60), 288, 4)
    """
    n, ka, kb = bounds.check_mm_params(n_workers, k_a, k_b)
    trials = check_trials(trials)
    rng = np.random.default_rng(seed)
    big_k = ka * kb
    s = n - big_k
    target = None
    fallback = False
    reason = None
    if scheme == "coarse":
        scheme, blocks = "sparse", (ka, kb)
    if scheme in ("sparse", "fine"):
        want = (ka, kb) if blocks is None else tuple(int(b) for b in blocks)
        if len(want) != 2 or want[0] % ka or want[1] % kb or min(want) < 1:
            raise ValueError(f"blocks must be multiples of (k_a, k_b) = {(ka, kb)}, got {blocks}")
        tol = s if stragglers is None else bounds._tolerance(n, big_k, stragglers)
        if scheme == "fine" or blocks is None or want != (ka, kb) or tol < s:
            made = _fine_mm(n, ka, kb, tol, rng, trials, blocks, nnz, scheme == "fine")
            if made is not None:
                return made
            if blocks is not None and want != (ka, kb):
                raise ValueError(f"no proved layout found for blocks = {want}")
            if tol < s:
                raise ValueError(f"no proved layout found for stragglers = {tol}")
    if scheme in ("unified", "beta-level"):
        if scheme == "unified":
            *parts, s = authors.unified_mm(n, ka, kb, rng)
        else:
            *parts, s = authors.beta_level_mm(n, ka, kb, beta or (1, 1), rng)
        return _multi_row_code(n, ka, kb, s, *parts, scheme=scheme, generic=scheme == "unified")
    if scheme in ("sparse", "fine"):
        scheme = "sparse"
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
        z = nodes_uniform(n)
        ea = z[:, None] ** (np.arange(ka) * kb)[None, :]
        eb = z[:, None] ** np.arange(kb)[None, :]
    elif scheme == "orthopoly":
        ea, eb = _orthopoly_mm(n, ka, kb)
    else:
        raise ValueError(
            f"scheme must be one of {(*MM_SCHEMES, *MM_EXTRA_SCHEMES)}, got {scheme!r}"
        )
    ea = as_encoding(ea, "encoding_a")
    eb = as_encoding(eb, "encoding_b")
    return MMCode(
        n_workers=n,
        k_a=ka,
        k_b=kb,
        stragglers=int(s),
        weight_a=int(row_weights(ea).max()),
        weight_b=int(row_weights(eb).max()),
        encoding_a=ea,
        encoding_b=eb,
        scheme=scheme,
        target_weights=target,
        fallback=fallback,
        fallback_reason=reason,
        generic=True,
    )


def _multi_row_code(n, ka, kb, s, ea, eb, owner, sa, sb, *, scheme, generic) -> MMCode:
    ea = as_encoding(ea, "encoding_a")
    eb = as_encoding(eb, "encoding_b")
    return MMCode(
        n_workers=n,
        k_a=ka,
        k_b=kb,
        stragglers=int(s),
        weight_a=int(row_weights(ea).max()),
        weight_b=int(row_weights(eb).max()),
        encoding_a=ea,
        encoding_b=eb,
        scheme=scheme,
        owner=np.asarray(owner, dtype=np.int64),
        slot_a=np.asarray(sa, dtype=np.int64),
        slot_b=np.asarray(sb, dtype=np.int64),
        generic=generic,
    )


def _coarse_cost(n, ka, kb, nnz) -> float:
    wa, wb = bounds.mm_weights(n, ka, kb, refined=True)
    return nnz[0] * wa / ka + nnz[1] * wb / kb


def _fine_mm(n, ka, kb, s, rng, trials, blocks, nnz, any_cost) -> MMCode | None:
    """The lightest proved one-side-fine layout (docs/theory.md section 12.3), or None.

    Candidates go cheapest first; with s = n - k_a k_b and no ``blocks``, only
    those strictly lighter than the coarse minimal pair (unless ``any_cost``).
    """
    full = s == n - ka * kb
    limit = _coarse_cost(n, ka, kb, nnz) if full and blocks is None and not any_cost else np.inf
    for cost, side, wc, g, total in fine.mm_candidates(n, ka, kb, s, nnz):
        if cost >= limit - 1e-9 * max(1.0, limit):
            break
        da, db = (g * ka, kb) if side == "a" else (ka, g * kb)
        if blocks is not None and (da, db) != tuple(blocks):
            continue
        if full and g == 1:
            continue  # the coarse search covers one class
        made = fine.fine_mm_layout(n, ka, kb, s, side, wc, g, total, rng)
        if made is None:
            continue
        coarse, sups = made
        parts = _fine_mm_draw(n, ka, kb, side, coarse, sups, rng)
        if trials > 1:
            cands = [parts] + [
                _fine_mm_draw(n, ka, kb, side, coarse, sups, rng) for _ in range(trials - 1)
            ]
            parts = min(cands, key=lambda p: _fine_score(n, p, trials))
        return _multi_row_code(n, ka, kb, s, *parts, scheme="sparse", generic=True)
    return None


def _fine_mm_draw(n, ka, kb, side, coarse, sups, rng):
    """Gaussian coefficients on a one-side-fine layout: rows (device, class)."""
    g = len(sups)
    kf = ka if side == "a" else kb
    kc = coarse.shape[1]
    ea, eb, owner, sa, sb = [], [], [], [], []
    for d in range(n):
        c = np.zeros(kc)
        c[coarse[d]] = rng.standard_normal(int(coarse[d].sum()))
        for cls in range(g):
            f = np.zeros(g * kf)
            idx = cls * kf + np.flatnonzero(sups[cls][d])
            if idx.size == 0:
                continue
            f[idx] = rng.standard_normal(idx.size)
            a, b = (f, c) if side == "a" else (c, f)
            ea.append(a)
            eb.append(b)
            owner.append(d)
            fine_id, coarse_id = d * g + cls, d
            sa.append(fine_id if side == "a" else coarse_id)
            sb.append(coarse_id if side == "a" else fine_id)
    return np.asarray(ea), np.asarray(eb), owner, sa, sb


def _fine_score(n, parts, trials) -> float:
    """Worst condition over the classes (each a one-row-per-device code)."""
    ea, eb, owner, _, _ = parts
    rows = (ea[:, :, None] * eb[:, None, :]).reshape(ea.shape[0], -1)
    owner = np.asarray(owner)
    split = classes_of(rows, owner, n)
    if split is None:
        return math.inf
    worst = 0.0
    budget = cond_budget(trials) / max(1, len(split))
    for rs, cols in split:
        sub = np.zeros((n, cols.size))
        sub[owner[rs]] = rows[np.ix_(rs, cols)]
        worst = max(worst, worst_condition_mv(sp.csr_array(sub), budget=budget))
    return worst


def _orthopoly_mm(n: int, ka: int, kb: int) -> tuple[np.ndarray, np.ndarray]:
    """Chebyshev MM code at Chebyshev nodes.

    ``a_ip = T_p(z_i)`` for ``p < k_a`` and ``b_iq = T_{q k_a}(z_i)`` for
    ``q < k_b``.  Since ``T_p T_{q k_a} = (T_{q k_a + p} + T_{|q k_a - p|}) / 2``,
    the products span the polynomials of degree ``< k_a k_b``, so any
    ``k_a k_b`` distinct nodes decode.  Both ``T_0`` columns are scaled by
    ``1/sqrt(2)`` (equal column norms under discrete orthogonality).
    """
    z = nodes_chebyshev(n)
    ta = chebyshev_table(z, np.arange(ka))
    tb = chebyshev_table(z, np.arange(kb) * ka)
    ta[:, 0] /= math.sqrt(2.0)
    tb[:, 0] /= math.sqrt(2.0)
    return ta, tb


def _mm_score(a: np.ndarray, b: np.ndarray, budget: float = 2.0e9) -> float:
    rows = (a[:, :, None] * b[:, None, :]).reshape(a.shape[0], -1)
    return worst_condition_mv(sp.csr_array(rows), budget=budget)


def _best_pair(draw, trials: int) -> tuple[np.ndarray, np.ndarray]:
    def score(ab: tuple[np.ndarray, np.ndarray]) -> float:
        return _mm_score(ab[0], ab[1], budget=cond_budget(trials))

    best, _ = best_of(draw, trials, score)
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
    still-deficient product cells, A-blocks and B-blocks (docs/theory.md section 5's three
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

    With ``k_a = 1`` or ``k_b = 1`` this is exactly docs/theory.md section 3's matrix-vector
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
    """Whether the layout decodes from every ``k_a k_b`` workers (generic coefficients).

    Theorem 5.1 (docs/theory.md): for independent generic coefficients the
    flow test on the pattern of the rows ``a_i kron b_i`` is exact, so the
    support is decided by k max-flows instead of rank over responder sets.
    The actual draw is then screened on adversarial sets (a float64-singular
    one means a degenerate draw; the caller redraws the layout).
    ``exhaustive_limit`` is kept for callers; the flow test needs none.
    """
    rows = (a[:, :, None] * b[:, None, :]).reshape(a.shape[0], -1)
    n, big_k = rows.shape
    if not hall_surplus_test(sp.csr_array(rows != 0, dtype=np.float64), n - big_k)[0]:
        return False
    adv = mm_adversarial_sets(a != 0, b != 0, n - big_k, rng, variants=1)
    return bool(np.isfinite(conditions(rows, adv)).all())


def _sparse_mm_layout(n, ka, kb, rng, trials):
    """Minimum-weight windows (docs/theory.md section 5), rank-verified; falls back pair by pair."""
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
                budget = cond_budget(trials)
                cands = [(a, b)] + [
                    _mm_windows(cells, ka, kb, wa, wb, rng) for _ in range(trials - 1)
                ]
                scores = [_mm_score(x, y, budget) for x, y in cands]
                a, b = cands[int(np.argmin(scores))]
            return a, b, (wa, wb), skipped
        skipped.append(f"({wa}, {wb}): no verified layout found by the window search")
    raise RuntimeError(f"no decodable MM layout found for n={n}, k_a={ka}, k_b={kb}")
