"""The seed authors' schemes, rebuilt from their published descriptions.

Baselines for the experiments (docs/theory.md section 13), written from the
descriptions in the authors' papers and scripts, in this package's own code:

``"lcm-optimal"`` (MV)
    ``Delta = lcm(n, k)`` sub-blocks; device i stores ``Delta / n``
    consecutive uncoded sub-blocks (``i Delta / n`` on) and
    ``Delta / k - Delta / n`` rows that mix *all* ``Delta`` sub-blocks with
    Gaussian coefficients.
``"unified"`` (MM)
    A cut into ``Delta_A = lcm(n, k_a)`` sub-blocks, B into ``k_b`` blocks.
    Device i stores ``l_u = Delta_A k_b / n`` uncoded A-sub-blocks
    ``i Delta_A / n, ..`` (cyclically) and ``l_c = Delta_A / k_a - l_u`` coded
    ones, the j-th mixing the residue class ``(i Delta_A / n + l_u + j) mod l``
    (``l = Delta_A / k_a``: ``k_a`` sub-blocks); one coded B-block of
    ``floor(k_b / floor(1 + k_b / s)) + 1`` cyclically consecutive blocks
    from ``i mod k_b``.  Every A-slot is multiplied by the B-slot.
``"beta-level"`` (MV and MM)
    For ``n = c k`` (MV): ``Delta = beta k`` sub-blocks, device i stores
    ``beta`` rows, row j mixing the ``beta`` sub-blocks
    ``(i + j) beta .. (i + j) beta + beta - 1`` (mod Delta) with one
    coefficient vector per device; it tolerates ``(c - 1) beta`` stragglers.
    MM (``n = c k_a k_b``): the same on each side with ``beta_a``,
    ``beta_b``; B's window index is ``floor(i / k_a)``; every A-slot times
    every B-slot; tolerates ``(c - 1) beta_a beta_b``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

__all__ = ["beta_level_mm", "beta_level_mv", "lcm_optimal_mv", "unified_mm"]


def lcm_optimal_mv(n: int, k: int, rng: np.random.Generator):
    """(encoding, owner, s) of the MV "optimal" scheme."""
    delta = math.lcm(n, k)
    lu = delta // n
    lc = delta // k - lu
    rows, owner = [], []
    for i in range(n):
        for j in range(lu):
            r = np.zeros(delta)
            r[(i * lu + j) % delta] = 1.0
            rows.append(r)
            owner.append(i)
        for _ in range(lc):
            rows.append(rng.standard_normal(delta))
            owner.append(i)
    return np.asarray(rows), np.asarray(owner, dtype=np.int64), n - k


def beta_level_mv(n: int, k: int, beta: int, rng: np.random.Generator):
    """(encoding, owner, s) of the beta-level MV scheme; needs ``k | n``."""
    if n % k:
        raise ValueError(f"beta-level needs k to divide n, got n = {n}, k = {k}")
    if not 1 <= beta <= k:
        raise ValueError(f"beta must be in [1, k = {k}], got {beta}")
    c = n // k
    delta = beta * k
    rows, owner = [], []
    for i in range(n):
        coef = rng.standard_normal(beta)
        for j in range(beta):
            r = np.zeros(delta)
            r[((i + j) * beta + np.arange(beta)) % delta] = coef
            rows.append(r)
            owner.append(i)
    return np.asarray(rows), np.asarray(owner, dtype=np.int64), (c - 1) * beta


def _pairs(a_slots: list[list[np.ndarray]], b_slots: list[list[np.ndarray]]):
    """Every A-slot times every B-slot, per device: encodings, owner, slot ids."""
    ea, eb, owner, sa, sb = [], [], [], [], []
    na = nb = 0
    for d, (alist, blist) in enumerate(zip(a_slots, b_slots, strict=True)):
        for ia, a in enumerate(alist):
            for ib, b in enumerate(blist):
                ea.append(a)
                eb.append(b)
                owner.append(d)
                sa.append(na + ia)
                sb.append(nb + ib)
        na += len(alist)
        nb += len(blist)
    return (
        np.asarray(ea),
        np.asarray(eb),
        np.asarray(owner, dtype=np.int64),
        np.asarray(sa, dtype=np.int64),
        np.asarray(sb, dtype=np.int64),
    )


def unified_mm(n: int, ka: int, kb: int, rng: np.random.Generator):
    """(ea, eb, owner, slot_a, slot_b, s) of the unified MM scheme."""
    s = n - ka * kb
    if s == 1 and kb > 1:
        # the B weight kb // (1 + kb / s) + 1 is then 1: B uncoded, and the code does not
        # tolerate the one straggler it would claim (found by exact rank over device sets)
        raise ValueError(
            f"the unified scheme as published needs n - k_a k_b >= 2 or k_b = 1, "
            f"got n = {n}, k_a = {ka}, k_b = {kb} (s = 1)"
        )
    delta_a = math.lcm(n, ka)
    ell = delta_a // ka
    lu = delta_a * kb // n
    lc = ell - lu
    den_b = kb // int(1 + kb / s) + 1 if s > 0 else 1
    den_b = min(den_b, kb)
    a_slots, b_slots = [], []
    for i in range(n):
        start = i * delta_a // n
        mine = []
        for j in range(lu):
            r = np.zeros(delta_a)
            r[(start + j) % delta_a] = 1.0
            mine.append(r)
        for j in range(lc):
            cls = (start + lu + j) % ell
            r = np.zeros(delta_a)
            r[cls + ell * np.arange(ka)] = rng.standard_normal(ka)
            mine.append(r)
        a_slots.append(mine)
        b = np.zeros(kb)
        b[(i % kb + np.arange(den_b)) % kb] = rng.standard_normal(den_b)
        b_slots.append([b])
    return (*_pairs(a_slots, b_slots), s)


def beta_level_mm(n: int, ka: int, kb: int, beta: tuple[int, int], rng: np.random.Generator):
    """(ea, eb, owner, slot_a, slot_b, s) of the beta-level MM scheme; ``k_a k_b | n``."""
    if n % (ka * kb):
        raise ValueError(f"beta-level needs k_a k_b to divide n, got n = {n}, k_a k_b = {ka * kb}")
    ba, bb = (int(v) for v in beta)
    if not (1 <= ba <= ka and 1 <= bb <= kb):
        raise ValueError(f"beta must be in [1, k_a] x [1, k_b], got {(ba, bb)}")
    c = n // (ka * kb)
    da, db = ba * ka, bb * kb
    a_slots, b_slots = [], []
    for i in range(n):
        ca, cb = rng.standard_normal(ba), rng.standard_normal(bb)
        mine_a = []
        for j in range(ba):
            r = np.zeros(da)
            r[((i + j) * ba + np.arange(ba)) % da] = ca
            mine_a.append(r)
        ii = (i * ba // da) % db
        mine_b = []
        for j in range(bb):
            r = np.zeros(db)
            r[((ii + j) * bb + np.arange(bb)) % db] = cb
            mine_b.append(r)
        a_slots.append(mine_a)
        b_slots.append(mine_b)
    return (*_pairs(a_slots, b_slots), (c - 1) * ba * bb)


def as_csr(m: np.ndarray) -> sp.csr_array:
    out = sp.csr_array(m)
    out.eliminate_zeros()
    return out
