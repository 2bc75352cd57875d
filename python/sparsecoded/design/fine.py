"""Sparse designs on finer partitions (docs/theory.md sections 11 and 12).

A is cut into ``blocks = G k`` sub-blocks, grouped into ``G`` *classes* of
``k`` consecutive sub-blocks; every device stores one coded sub-block (a
*slot*) per class, whose support lies inside the class.  Storage is the
coarse code's (``G`` slots of ``1 / (G k)`` of A each), but the weights may
differ from class to class: a device can be light (even uncoded) in most
classes and heavier in a few, and the classes rotate who is heavy, so that
the total weight per device sits at the bound ``(s + 1) / n`` of A instead
of the coarse ``ceil(k (s + 1) / n) / k``.

Because a slot's support lies inside its class, the system is block
diagonal: class g (MV), or class pair (g, h) (MM), is a coarse code of its
own on the same n devices, one row per device.  Each is proved by the exact
flow test (Theorem 4.2 for MV, Theorem 5.1 for MM); the whole code decodes
from a set of devices iff every class does (docs/theory.md Theorem 11.3).

For MM this module builds *one side fine*: one of A, B keeps the coarse
partition with one cyclic window of weight ``w_c`` per device, the other is
cut into classes as above (the seed authors' unified scheme is the case
"A fine, B coarse" with uncoded slots plus one dense one).  Both sides fine
would approach the bound of Theorem 12.1 more closely; section 12.4 says how
far this family is from it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from .responders import hall_surplus_test

__all__ = ["fine_mm_layout", "fine_mv_layout", "mv_candidates", "mm_candidates"]

# Support draws per class before a candidate partition is given up.
CLASS_ATTEMPTS = 24
# Largest number of classes (sub-blocks per coarse block) the automatic
# choice considers.
MAX_CLASSES = 12


def rotated(n: int, pattern: tuple[int, ...]) -> np.ndarray:
    """Per-device, per-class weights: device d has ``pattern[(g + d) mod G]`` in class g.

    Every device's total is ``sum(pattern)``; class g sees every entry of the
    pattern about ``n / G`` times.
    """
    g = len(pattern)
    pat = np.asarray(pattern, dtype=np.int64)
    return pat[(np.arange(g)[None, :] + np.arange(n)[:, None]) % g]


def patterns(total: int, classes: int, k: int) -> Iterator[tuple[int, ...]]:
    """Weight patterns over ``classes`` with entries in ``[0, k]`` summing to ``total``.

    Two values at most: the balanced one first (entries ``q`` and ``q + 1``),
    then ``a < b`` with more spread (``(1, .., 1, k)`` is the seed authors'
    uncoded-plus-one-dense pattern).
    """
    if not classes <= total <= classes * k:
        return
    q, r = divmod(total, classes)
    seen = set()
    first = tuple([q + 1] * r + [q] * (classes - r))
    seen.add(first)
    yield first
    for a in range(0, k + 1):
        for b in range(k, a, -1):
            # c entries b, the rest a
            if (total - classes * a) % (b - a):
                continue
            c = (total - classes * a) // (b - a)
            if 0 < c < classes:
                pat = tuple([b] * c + [a] * (classes - c))
                if pat not in seen:
                    seen.add(pat)
                    yield pat


def _windows(weights: np.ndarray, k: int, order: np.ndarray) -> np.ndarray:
    """Cyclic windows spread like docs/theory.md section 3.1: start ``floor(W_<d k / W)``."""
    n = weights.size
    sup = np.zeros((n, k), dtype=bool)
    tot = max(1, int(weights.sum()))
    cum = 0
    for d in order:
        start = (cum * k) // tot
        sup[d, (start + np.arange(weights[d])) % k] = True
        cum += int(weights[d])
    return sup


def _random_subsets(weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Each device takes its weight in the least used blocks (random ties)."""
    n = weights.size
    sup = np.zeros((n, k), dtype=bool)
    use = np.zeros(k)
    for d in rng.permutation(n):
        w = int(weights[d])
        if w:
            pick = np.argsort(use + rng.random(k), kind="stable")[:w]
            sup[d, pick] = True
            use[pick] += 1
    return sup


def _greedy(weights: np.ndarray, k: int, other: np.ndarray, s: int, rng) -> np.ndarray:
    """Each device takes the blocks whose cells are furthest below ``s + 1`` holders.

    ``other`` is the ``(n, k_o)`` support on the other side (a column of ones
    for MV); the cells of device d are its blocks times ``other[d]``.
    Devices go heaviest first, in random order among equals.
    """
    n = weights.size
    sup = np.zeros((n, k), dtype=bool)
    cov = np.zeros((k, other.shape[1]))
    order = sorted(range(n), key=lambda d: (-int(weights[d]), rng.random()))
    for d in order:
        w = int(weights[d])
        if not w:
            continue
        deficit = np.maximum(0.0, s + 1 - cov[:, other[d]]).sum(axis=1)
        pick = np.argsort(-(deficit + 0.5 * rng.random(k)), kind="stable")[:w]
        sup[d, pick] = True
        cov[np.ix_(pick, np.flatnonzero(other[d]))] += 1
    return sup


def _supports(weights, k, rng, attempts, other=None, s=0) -> Iterator[np.ndarray]:
    n = weights.size
    if other is None:
        other = np.ones((n, 1), dtype=bool)
    yield _windows(weights, k, np.arange(n))
    for t in range(attempts - 1):
        if t % 3 == 2:
            yield _windows(weights, k, rng.permutation(n))
        else:
            yield _greedy(weights, k, other, s, rng)


def _pattern(sup: np.ndarray) -> sp.csr_array:
    return sp.csr_array(sup.astype(np.float64))


# ---------------------------------------------------------------------------
# matrix-vector


def mv_candidates(n: int, k: int, s: int, max_classes: int = MAX_CLASSES):
    """Partitions ``G`` (classes) with their best possible load, lightest first.

    The load of G classes is ``ceil(G k (s + 1) / n) / (G k)`` of A per
    device (Theorem 11.1 at ``blocks = G k``).
    """
    out = []
    for g in range(1, max_classes + 1):
        total = -(-g * k * (s + 1) // n)
        out.append((total / (g * k), g, total))
    out.sort()
    return out


def fine_mv_layout(n: int, k: int, s: int, classes: int, total: int, rng):
    """Supports for G classes at per-device total weight ``total``, or None.

    Returns
    -------
    list of numpy.ndarray or None
        One ``(n, k)`` boolean support per class, each proved by the flow test.
    """
    for pat in patterns(total, classes, k):
        w = rotated(n, pat)
        if (w.sum(axis=0) < k * (s + 1)).any():
            continue
        sups = []
        for g in range(classes):
            found = None
            for sup in _supports(w[:, g], k, rng, CLASS_ATTEMPTS, None, s):
                if (sup.sum(axis=0) < s + 1).any():
                    continue
                if hall_surplus_test(_pattern(sup), s)[0]:
                    found = sup
                    break
            if found is None:
                break
            sups.append(found)
        if len(sups) == classes:
            return sups
    return None


# ---------------------------------------------------------------------------
# matrix-matrix, one side fine


def _coarse_windows(n: int, k: int, w: int) -> np.ndarray:
    sup = np.zeros((n, k), dtype=bool)
    for d in range(n):
        sup[d, ((d * k) // n + np.arange(w)) % k] = True
    return sup


def mm_candidates(
    n: int, ka: int, kb: int, s: int, nnz: tuple[float, float], max_classes: int = MAX_CLASSES
):
    """(cost, fine side, coarse weight, classes, total) candidates, cheapest first.

    Cost is the linear load ``N_A x + N_B y`` of every device.  Candidates
    failing the necessary count ``n x y >= s + 1`` (Theorem 12.1) or the
    per-sub-block counts are left out.
    """
    na, nb = nnz
    out = []
    for side in ("a", "b"):
        kf, kc = (ka, kb) if side == "a" else (kb, ka)
        nf, nc = (na, nb) if side == "a" else (nb, na)
        for wc in range(1, kc + 1):
            yc = wc / kc
            for g in range(2, max_classes + 1):
                # n x yc >= s + 1 and n x >= kc + s (each fine sub-block)
                need = max((s + 1) / (n * yc), (kc + s) / n)
                total = max(g, math.ceil(need * g * kf - 1e-9))
                if total > g * kf:
                    continue
                x = total / (g * kf)
                if n * yc < kf + s - 1e-9:  # each coarse block on kf + s devices
                    continue
                out.append((nf * x + nc * yc, side, wc, g, total))
    out.sort()
    return out


def fine_mm_layout(n, ka, kb, s, side, wc, classes, total, rng):
    """Supports of a one-side-fine MM code, or None.

    Returns
    -------
    (numpy.ndarray, list of numpy.ndarray) or None
        The coarse side's ``(n, k_c)`` support and one ``(n, k_f)`` support
        per class of the fine side; every class's product pattern passes the
        exact flow test of Theorem 5.1.
    """
    kf, kc = (ka, kb) if side == "a" else (kb, ka)
    coarse = _coarse_windows(n, kc, wc)
    for pat in itertools.islice(patterns(total, classes, kf), 8):
        w = rotated(n, pat)
        if ((w * wc).sum(axis=0) < ka * kb * (s + 1)).any():
            continue
        sups = []
        for g in range(classes):
            found = None
            for sup in _supports(w[:, g], kf, rng, CLASS_ATTEMPTS, coarse, s):
                fa, fb = (sup, coarse) if side == "a" else (coarse, sup)
                rows = (fa[:, :, None] & fb[:, None, :]).reshape(n, -1)
                if (rows.sum(axis=0) < s + 1).any():
                    continue
                if hall_surplus_test(_pattern(rows), s)[0]:
                    found = sup
                    break
            if found is None:
                break
            sups.append(found)
        if len(sups) == classes:
            return coarse, sups
    return None
