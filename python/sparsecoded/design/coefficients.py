"""Supports and coefficients shared by the MV and MM constructions.

Cyclic and random supports (docs/theory.md section 3), Gaussian coefficients on
a support, polynomial nodes and Chebyshev tables for the dense baselines, and
the best-of-``trials`` search that keeps the draw with the best worst-case
condition number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import scipy.sparse as sp

from .responders import hall_surplus_test

__all__ = ["cyclic_support", "random_support"]

T = TypeVar("T")


def cyclic_support(n_rows: int, k: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the cyclic layout of docs/theory.md section 3.

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


def sparse_support(n, k, w, layout, rng):
    if layout == "cyclic":
        return cyclic_support(n, k, w)
    if layout != "random":
        raise ValueError(f"layout must be 'cyclic' or 'random', got {layout!r}")
    pattern_shape = (n, k)
    for _ in range(RANDOM_LAYOUT_ATTEMPTS):
        rows, cols = random_support(n, k, w, rng)
        pattern = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=pattern_shape)
        if hall_surplus_test(pattern, n - k)[0]:
            return rows, cols
    # no random support passed: the cyclic one always does
    return cyclic_support(n, k, w)


def gaussian_on(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], rng) -> sp.csr_array:
    vals = rng.standard_normal(rows.size)
    e = sp.csr_array((vals, (rows, cols)), shape=shape)
    e.sort_indices()
    return e


def best_of(draw: Callable[[], T], trials: int, score: Callable[[T], float]) -> tuple[T, float]:
    """The best of ``trials`` draws by ``score`` (lower is better); one draw is not scored."""
    if trials == 1:  # nothing to compare: skip the condition numbers
        return draw(), math.nan
    best, best_score = draw(), math.inf
    best_score = score(best)
    for _ in range(trials - 1):
        cand = draw()
        sc = score(cand)
        if sc < best_score:
            best, best_score = cand, sc
    return best, best_score


def check_trials(trials: int) -> int:
    if isinstance(trials, bool) or not isinstance(trials, int | np.integer) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    return int(trials)


def nodes_uniform(n: int) -> np.ndarray:
    # docs/theory.md section 9: z_i = -1 + 2 i / n, i = 1..n (the last node is 1)
    return -1.0 + 2.0 * np.arange(1, n + 1) / n


def nodes_chebyshev(n: int) -> np.ndarray:
    i = np.arange(1, n + 1)
    return np.cos((2 * i - 1) * np.pi / (2 * n))


def chebyshev_table(z: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    # T_d(z) = cos(d arccos z) for |z| <= 1
    return np.cos(np.outer(np.arccos(np.clip(z, -1.0, 1.0)), degrees))
