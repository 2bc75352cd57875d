"""Matrix-vector constructions: :func:`design_mv` and the heterogeneous designer.

Schemes
-------
``"sparse"``
    This package's minimum-weight design (docs/theory.md sections 2-4).
``"uncoded"``
    Worker i < k holds block i; the others hold nothing (weight 0).
``"replication"``
    Worker i holds block ``i mod k``.
``"mds"``
    Dense Gaussian mixing of all blocks.
``"polynomial"``
    Real Vandermonde at nodes ``z_i = -1 + 2 i / n``, ``i = 1..n``.
``"orthopoly"``
    Chebyshev polynomials at Chebyshev nodes (:func:`_orthopoly_mv`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from . import authors, bounds, fine
from .codes import GENERIC_MV, MV_EXTRA_SCHEMES, MV_SCHEMES, MVCode, as_encoding, row_weights
from .coefficients import (
    best_of,
    chebyshev_table,
    check_trials,
    cyclic_support,
    gaussian_on,
    nodes_chebyshev,
    nodes_uniform,
    sparse_support,
)
from .responders import hetero_decodable_supports, worst_condition_hetero, worst_condition_mv

__all__ = ["DEFAULT_TRIALS", "design_mv"]

DEFAULT_TRIALS = 5


def _mv_score(e: sp.csr_array, cond_budget: float) -> float:
    return worst_condition_mv(e, budget=cond_budget)


def _orthopoly_mv(n: int, k: int) -> np.ndarray:
    """Chebyshev code: row i is ``T_j(z_i)``, j < k, at Chebyshev nodes.

    The ``T_0`` column is scaled by ``1/sqrt(2)`` so that all columns have the
    same norm over the n nodes (discrete orthogonality of T_j).
    """
    t = chebyshev_table(nodes_chebyshev(n), np.arange(k))
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
    blocks: int | str | None = None,
    beta: int | None = None,
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
        Coded blocks stored by each device (docs/theory.md section 6); length
        ``n_workers``.  Only for ``"sparse"``.  The rows are then the
        ``sum(capacities)`` coded blocks, dealt round-robin to the devices
        (``owner``), with the cyclic layout over the rows.  The weight starts
        at the lower bound :func:`sparsecoded.design.bounds.hetero_weight` and grows
        until every set of ``stragglers`` silenced devices leaves a decodable
        system (checked exhaustively, structural rank, when there are at most
        20000 such sets).  When no lighter layout is proven this way, the
        virtual-worker weight ``mv_weight(sum(capacities), k)`` is used: then
        any ``k`` finished blocks decode, partial work of slow devices included.
        Also ``"coarse"`` (the sparse design with ``blocks=k``), ``"fine"``
        (``blocks="auto"``), and the seed authors' ``"lcm-optimal"`` and
        ``"beta-level"`` (docs/theory.md section 13).
    stragglers : int, optional
        With capacities: physical stragglers to tolerate (default the most
        possible).  Without: ``"sparse"`` on a finer partition tolerating
        ``s < n - k`` devices, the lighter code of the tolerance knob
        (docs/theory.md section 11.4; implies ``blocks="auto"`` unless given).
    seed : int or numpy.random.Generator, optional
        Makes the random coefficients reproducible.
    trials : int
        Random coefficient draws; the one with the smallest worst-case
        condition number over responder sets is kept.
    layout : str
        Support of ``"sparse"``: ``"random"`` (default: a balanced random
        support, kept once the flow test proves it straggler-optimal, else the
        cyclic one) or ``"cyclic"`` (docs/theory.md section 3, straggler-optimal by
        construction).  Same weight.  The cyclic band is badly conditioned
        when a run of consecutive workers straggles, and more so as n grows
        (worst condition, n = 20, k = 16: 3.5e5 cyclic against 6.2e4 random;
        n = 1000, k = 900, sampled: 3.2e12 against 5.8e5), which is why the
        default is random: decoding multiplies rounding errors by that
        number.
    blocks : int or "auto", optional
        ``"sparse"``: cut A into ``blocks`` sub-blocks (a multiple of k) and
        give every device ``blocks / k`` rows, one per class of k sub-blocks
        (docs/theory.md section 11).  ``"auto"`` takes the lightest partition
        up to ``12 k`` whose layout is proved by the flow test; it is lighter
        than the coarse code exactly when n does not divide ``k (s + 1)``.
        Default (None): the coarse code, ``blocks = k``.
    beta : int, optional
        ``"beta-level"``: the level (default ``k``).

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
    trials = check_trials(trials)
    rng = np.random.default_rng(seed)
    own = np.arange(n)
    if scheme == "coarse":
        scheme, blocks = "sparse", k
    elif scheme == "fine":
        scheme, blocks = "sparse", "auto" if blocks is None else blocks
    if scheme == "sparse" and (stragglers is not None or blocks not in (None, k)):
        tol = bounds._tolerance(n, k, stragglers)
        if blocks is None:
            blocks = "auto"
        made = _fine_mv(n, k, tol, blocks, rng, trials)
        if made is not None:
            return made
        if blocks != "auto":
            raise ValueError(f"no proved layout found for blocks = {blocks}")
    if scheme in ("lcm-optimal", "beta-level"):
        if scheme == "lcm-optimal":
            e, owner, s = authors.lcm_optimal_mv(n, k, rng)
        else:
            e, owner, s = authors.beta_level_mv(n, k, k if beta is None else int(beta), rng)
        return _multi_row_code(n, k, s, e, owner, scheme=scheme, generic=scheme == "lcm-optimal")
    if scheme == "sparse":
        w = bounds.mv_weight(n, k)
        rows, cols = sparse_support(n, k, w, layout, rng)
        budget = cond_budget(trials)
        e, _ = best_of(
            lambda: gaussian_on(rows, cols, (n, k), rng), trials, lambda m: _mv_score(m, budget)
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
        budget = cond_budget(trials)
        e, _ = best_of(
            lambda: sp.csr_array(rng.standard_normal((n, k))),
            trials,
            lambda m: _mv_score(m, budget),
        )
        s = n - k
    elif scheme == "polynomial":
        e = sp.csr_array(np.vander(nodes_uniform(n), k, increasing=True))
        s = n - k
    elif scheme == "orthopoly":
        e = sp.csr_array(_orthopoly_mv(n, k))
        s = n - k
    else:
        raise ValueError(
            f"scheme must be one of {(*MV_SCHEMES, *MV_EXTRA_SCHEMES)}, got {scheme!r}"
        )
    e = as_encoding(e, "encoding")
    return MVCode(
        n_workers=n,
        k=k,
        stragglers=int(s),
        weight=int(row_weights(e).max()),
        encoding=e,
        owner=own,
        capacities=None,
        scheme=scheme,
        generic=scheme in GENERIC_MV,
    )


def _multi_row_code(n, k, s, e, owner, *, scheme: str, generic: bool) -> MVCode:
    """An MVCode whose devices own several rows: capacities follow from ``owner``."""
    e = as_encoding(e, "encoding")
    owner = np.asarray(owner)
    return MVCode(
        n_workers=n,
        k=k,
        stragglers=int(s),
        weight=int(row_weights(e).max()),
        encoding=e,
        owner=owner,
        capacities=tuple(int(c) for c in np.bincount(owner, minlength=n)),
        scheme=scheme,
        generic=generic,
    )


def _fine_mv(n, k, s, blocks, rng, trials) -> MVCode | None:
    """The sparse design on a finer partition (docs/theory.md section 11.3), or None."""
    if blocks == "auto":
        coarse = -(-k * (s + 1) // n) / k
        cands = [c for c in fine.mv_candidates(n, k, s) if c[0] < coarse - 1e-12 or s < n - k]
    else:
        d = bounds._check_int("blocks", blocks)
        if d < k or d % k:
            raise ValueError(f"blocks must be a positive multiple of k = {k}, got {blocks}")
        g = d // k
        cands = [(0.0, g, -(-g * k * (s + 1) // n))]
    for _, g, total in cands:
        sups = fine.fine_mv_layout(n, k, s, g, total, rng)
        if sups is None:
            continue

        def draw(sups=sups, g=g):
            rows, cols, owner = [], [], []
            for d in range(n):
                for cls in range(g):
                    idx = np.flatnonzero(sups[cls][d])
                    if idx.size:
                        rows.append(np.full(idx.size, len(owner)))
                        cols.append(cls * k + idx)
                        owner.append(d)
            r, c = np.concatenate(rows), np.concatenate(cols)
            e = sp.csr_array((rng.standard_normal(r.size), (r, c)), shape=(len(owner), g * k))
            return e, np.asarray(owner, dtype=np.int64)

        def score(cand, g=g):
            e, owner = cand
            worst = 0.0
            for cls in range(g):
                sub = np.zeros((n, k))
                part = e[:, cls * k : (cls + 1) * k].toarray()
                nz = np.flatnonzero(np.abs(part).sum(axis=1))
                sub[owner[nz]] = part[nz]
                worst = max(worst, _mv_score(sp.csr_array(sub), cond_budget(trials) / g))
            return worst

        (e, owner), _ = best_of(draw, trials, score)
        return _multi_row_code(n, k, s, e, owner, scheme="sparse", generic=True)
    return None


def cond_budget(trials: int) -> float:
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
    n = bounds._check_int("n_workers", n_workers)
    if n < 1:
        raise ValueError(f"n_workers must be >= 1, got {n}")
    caps = bounds.validate_capacities(capacities, k)
    if len(caps) != n:
        raise ValueError(f"capacities must have length n_workers = {n}, got {len(caps)}")
    k = int(k)
    s = bounds.hetero_stragglers(caps, k) if stragglers is None else int(stragglers)
    lower = bounds.hetero_weight(caps, k, s)  # also validates s
    trials = check_trials(trials)
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
    e, _ = best_of(
        lambda: gaussian_on(rows, cols, (total, k), rng),
        trials,
        lambda m: worst_condition_hetero(m, owner, n, s),
    )
    return _multi_row_code(n, k, s, e, owner, scheme="sparse", generic=True)
