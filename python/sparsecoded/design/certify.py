"""Certificates: does a code decode from every allowed set of responders?

Three ways to know (docs/theory.md section 10; flow test: section 4):

``"exhaustive"``
    Every responder set is solved-for: the singular values of each
    ``k x k`` submatrix give its rank and condition number.  Exact for the
    actual coefficients; used while the number of sets is at most
    ``max_subsets``.
``"flow"``
    Matrix-vector only.  Hall's condition with surplus ``s`` on the support
    pattern, checked by ``k`` max-flows.  It proves that any k workers
    decode for generic coefficients (probability 1 for continuous i.i.d.
    draws), for any n, in polynomial time.  So it is a proof only for codes
    whose coefficients are generic (``MVCode.generic``: the ones
    :func:`sparsecoded.design_mv` draws); the actual coefficients are also
    checked on sampled and adversarial responder sets.  A failed flow test
    is a proof of failure for any coefficients.
``"sampled"``
    Codes too large to enumerate that the flow test cannot settle
    (matrix-matrix codes, a user's own matrix that passes the flow test):
    random responder sets plus adversarial ones (all workers that touch one
    block silenced first).  A pass is evidence, not proof.

``Certificate.proven`` says whether the verdict, either way, is proved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .bounds import hetero_stragglers
from .codes import MMCode, MVCode
from .responders import (
    EXACT_CHECKS_GIVEN,
    EXACT_CHECKS_LARGE,
    EXHAUSTIVE_FLOPS,
    adversarial_sets,
    classes_of,
    conditions,
    exactly_singular,
    exhaustive,
    exhaustive_cost,
    float_residues,
    flow_witness,
    hall_surplus_test,
    hetero_scan,
    mm_adversarial_sets,
    mm_product_residues,
    sample_subsets,
)

__all__ = ["Certificate", "certify"]


def _violated(blocks: np.ndarray | None) -> np.ndarray:
    """The blocks a failed flow test names (it always names some)."""
    if blocks is None:
        raise RuntimeError("the flow test failed without naming a violating set of blocks")
    return blocks


@dataclass(frozen=True)
class Certificate:
    """Outcome of :func:`certify`.

    Attributes
    ----------
    straggler_optimal : bool
        Every responder set allowed by the code decodes in exact arithmetic
        (float64-singular systems are re-checked exactly, see
        :func:`exact_full_rank`): any ``k`` workers
        (MV), any ``k_a k_b`` workers (MM), any ``n - s`` devices
        (heterogeneous, ``s = code.stragglers``).
    method : str
        ``"flow"``, ``"exhaustive"`` or ``"sampled"`` (see the module docs).
    worst_condition : float
        Largest condition number of a responder submatrix seen (``inf`` when a
        singular one was found).  Exact for ``"exhaustive"``, a lower estimate
        otherwise.
    subsets_checked : int
        Responder sets whose submatrix was factorised.
    witness : tuple of int or None
        On failure, a set of workers (devices) that cannot decode.
    stragglers : int
        Stragglers the check was made for.
    numerically_singular : int
        Responder sets checked whose system float64 cannot solve reliably
        (condition at numpy's rank tolerance).  They are decodable in exact
        arithmetic when ``straggler_optimal`` holds, but decoding them in
        floating point will not be accurate.
    proven : bool
        True when the verdict is proved: every set checked with the actual
        coefficients (``"exhaustive"``), the flow test on a generic code, or
        a failure with a witness.  False for a ``"sampled"`` pass, and when
        more float64-singular sets turned up than could be re-checked
        exactly (then ``straggler_optimal`` is False and ``witness`` None:
        not known).
    """

    straggler_optimal: bool
    method: str
    worst_condition: float
    subsets_checked: int
    witness: tuple[int, ...] | None = None
    stragglers: int = 0
    numerically_singular: int = 0
    proven: bool = True

    def __bool__(self) -> bool:
        return self.straggler_optimal


def certify(
    code: object,
    *,
    max_subsets: int = 200_000,
    samples: int = 2000,
    seed: int | None = None,
) -> Certificate:
    """Decide whether a code decodes from every allowed set of responders.

    Parameters
    ----------
    code : MVCode or MMCode
        Any code, including one built from your own matrix with
        :meth:`MVCode.from_matrix` / :meth:`MMCode.from_matrices`.
    max_subsets : int
        Enumerate every responder set while there are at most this many
        (for MV also while their factorisations stay under
        ``EXHAUSTIVE_FLOPS``; the flow test proves the rest).
    samples : int
        Random responder sets used when not enumerating (also for the
        condition estimate of the flow method).
    seed : int, optional
        For the sampled sets.

    Returns
    -------
    Certificate

    Examples
    --------
    >>> from sparsecoded import design_mv
    >>> cert = certify(design_mv(12, 9, seed=0))
    >>> cert.straggler_optimal, cert.method
    (True, 'exhaustive')
    >>> certify(design_mv(12, 9, "replication")).witness  # two copies of block 0
    (0, 1, 2, 3, 4, 5, 6, 7, 9)
    """
    if isinstance(code, MMCode):
        return _certify_mm(code, max_subsets, samples, seed)
    if isinstance(code, MVCode):
        if code.capacities is not None:
            return _certify_hetero(code, max_subsets, samples, seed)
        return _certify_mv(code, max_subsets, samples, seed)
    raise TypeError(f"certify expects an MVCode or MMCode, got {type(code).__name__}")


def _certify_mv(code, max_subsets, samples, seed) -> Certificate:
    e = code.encoding
    n, k = e.shape
    s = n - k
    dense = e.toarray()
    generic = bool(getattr(code, "generic", False))
    total = math.comb(n, k)
    # few subsets can still be too much work when k is large (n = 1000, k = 999)
    if total <= max_subsets and total * exhaustive_cost(k) <= EXHAUSTIVE_FLOPS:
        if generic:
            worst, count, singular, n_sing = exhaustive(dense, k)
            witness, unchecked = exactly_singular(dense, singular)
        else:
            keep = EXACT_CHECKS_GIVEN if k <= 64 else EXACT_CHECKS_LARGE
            worst, count, singular, n_sing = exhaustive(dense, k, keep=keep)
            witness, unchecked = exactly_singular(dense, singular, keep)
        unchecked += n_sing - len(singular)
        proven = True
        if witness is None and unchecked:
            # too many float64-singular sets to check exactly: a failed flow
            # test still proves failure; a passed one proves success only for
            # generic coefficients
            ok, blocks = hall_surplus_test(e, s)
            if not ok:
                witness = flow_witness(e, _violated(blocks), s)
            elif not generic:
                proven = False
        return Certificate(
            witness is None and proven, "exhaustive", worst, count, witness, s, n_sing, proven
        )
    ok, blocks = hall_surplus_test(e, s)
    if not ok:
        return Certificate(False, "flow", math.inf, 0, flow_witness(e, _violated(blocks), s), s)
    rng = np.random.default_rng(seed)
    count = int(min(samples, max(8, 4.0e9 / exhaustive_cost(k))))
    adv = adversarial_sets(e, s, rng, max(1, count // 2))
    subs = np.concatenate([adv, sample_subsets(n, k, max(0, count - adv.shape[0]), rng)])
    conds = conditions(dense, subs)
    bad = np.flatnonzero(~np.isfinite(conds))
    # float64-singular samples are checked exactly to tell degenerate
    # coefficients from ill-conditioned ones
    witness, unchecked = exactly_singular(dense, [tuple(int(i) for i in subs[b]) for b in bad])
    worst = float(conds.max())
    if generic:  # the support is proven, and generic coefficients follow it
        return Certificate(witness is None, "flow", worst, subs.shape[0], witness, s, int(bad.size))
    ok = witness is None and not unchecked
    return Certificate(
        ok, "sampled", worst, subs.shape[0], witness, s, int(bad.size), witness is not None
    )


def _certify_hetero(code, max_subsets, samples, seed) -> Certificate:
    e, owner, n = code.encoding, np.asarray(code.owner), code.n_workers
    k = e.shape[1]
    s = code.stragglers
    caps = np.bincount(owner, minlength=n)
    if getattr(code, "generic", False):
        split = classes_of(e, owner, n)
        if split is not None:
            return _certify_classes(e.toarray(), owner, split, n, s, max_subsets, samples, seed)
    if math.comb(n, s) <= max_subsets:
        worst, count, witness, method = hetero_scan(e, owner, n, s, max_subsets, seed)
        return Certificate(witness is None, method, worst, count, witness, s)
    # Any k rows decode (virtual flow test) and any n - s devices hold k rows
    # => any n - s devices decode.
    n_rows = e.shape[0]
    ok = s <= hetero_stragglers(caps.tolist(), k) and hall_surplus_test(e, n_rows - k)[0]
    worst, count, witness, method = hetero_scan(e, owner, n, s, samples, seed)
    if ok and witness is None and getattr(code, "generic", False):
        return Certificate(True, "flow", worst, count, None, s)
    return Certificate(witness is None, "sampled", worst, count, witness, s, proven=False)


def _certify_mm(code, max_subsets, samples, seed) -> Certificate:
    rows = code.product_rows()
    # the exact system: rows are products of two floats, rounded in ``rows``
    exact = mm_product_residues(code.encoding_a.toarray(), code.encoding_b.toarray())
    if code.owner is not None:
        return _certify_mm_devices(code, rows, exact, max_subsets, samples, seed)
    n, big_k = rows.shape
    s = n - big_k
    if math.comb(n, big_k) > max_subsets and code.generic:
        # Theorem 5.1: for generic coefficients the flow test on the pattern of
        # the rows a_i kron b_i is exact, for any n
        pattern = sp.csr_array(rows != 0, dtype=np.float64)
        ok, cells = hall_surplus_test(pattern, s)
        if not ok:
            return Certificate(
                False, "flow", math.inf, 0, flow_witness(pattern, _violated(cells), s), s
            )
        rng = np.random.default_rng(seed)
        subs = np.concatenate(
            [_mm_adversarial(code, s, rng), sample_subsets(n, big_k, samples, rng)]
        )
        conds = conditions(rows, subs)
        bad = np.flatnonzero(~np.isfinite(conds))
        witness, _ = exactly_singular(
            rows, [tuple(int(i) for i in subs[b]) for b in bad], residues=exact
        )
        return Certificate(
            witness is None, "flow", float(conds.max()), subs.shape[0], witness, s, int(bad.size)
        )
    if math.comb(n, big_k) <= max_subsets:
        worst, count, singular, n_sing = exhaustive(rows, big_k)
        witness, unchecked = exactly_singular(rows, singular, residues=exact)
        unchecked += n_sing - len(singular)
        ok = witness is None and not unchecked
        proven = witness is not None or not unchecked
        return Certificate(ok, "exhaustive", worst, count, witness, s, n_sing, proven)
    rng = np.random.default_rng(seed)
    adv = _mm_adversarial(code, s, rng)
    subs = np.concatenate([adv, sample_subsets(n, big_k, samples, rng)])
    conds = conditions(rows, subs)
    bad = np.flatnonzero(~np.isfinite(conds))
    witness, unchecked = exactly_singular(
        rows, [tuple(int(i) for i in subs[b]) for b in bad], residues=exact
    )
    ok = witness is None and not unchecked
    worst = float(conds.max())
    return Certificate(
        ok, "sampled", worst, subs.shape[0], witness, s, int(bad.size), witness is not None
    )


def _mm_adversarial(code, s: int, rng: np.random.Generator, variants: int = 3) -> np.ndarray:
    """Silence first the workers touching one A-block, one B-block or one cell."""
    a = code.encoding_a.toarray() != 0
    b = code.encoding_b.toarray() != 0
    return mm_adversarial_sets(a, b, s, rng, variants)


# ---------------------------------------------------------------------------
# codes with several rows per device, by classes (docs/theory.md Theorem 11.3)


def _certify_classes(
    dense, owner, split, n, s, max_subsets, samples, seed, exact=None
) -> Certificate:
    """Every class must decode from any n - s devices; each is a one-row-per-device code.

    Per class: the ``(n, c)`` matrix with a zero row for devices that hold
    nothing there.  Exhaustive over the sets of ``n - s`` devices when each
    class is square for them and the sets are few, else the flow test (exact
    for generic coefficients, Theorems 4.2 and 5.1) with sampled conditions.
    """
    worst, count, n_sing, all_exhaustive = 0.0, 0, 0, True
    rng = np.random.default_rng(seed)
    r = n - s
    exact_all = float_residues(dense) if exact is None else exact
    for rows, cols in split:
        sub = np.zeros((n, cols.size))
        sub[owner[rows]] = dense[np.ix_(rows, cols)]
        sub_exact = np.zeros((n, cols.size), dtype=np.int64)
        sub_exact[owner[rows]] = exact_all[np.ix_(rows, cols)]
        if r == cols.size and math.comb(n, r) <= max_subsets:
            w, c, singular, ns = exhaustive(sub, r)
            witness, left = exactly_singular(sub, singular, residues=sub_exact)
            count, n_sing, worst = count + c, n_sing + ns, max(worst, w)
            if witness is not None:
                return Certificate(False, "exhaustive", math.inf, count, witness, s, n_sing)
            if left + ns - len(singular):
                # more float-singular sets than the exact checks cover: the flow
                # test decides, as for any generic code (Theorems 4.2 and 5.1)
                pattern = sp.csr_array(sub != 0, dtype=np.float64)
                ok, bad_cols = hall_surplus_test(pattern, s)
                if not ok:
                    cols_bad = _violated(bad_cols)
                    return Certificate(
                        False, "flow", math.inf, count, flow_witness(pattern, cols_bad, s), s
                    )
            continue
        all_exhaustive = False
        pattern = sp.csr_array(sub != 0, dtype=np.float64)
        ok, bad_cols = hall_surplus_test(pattern, s)
        if not ok:
            return Certificate(
                False, "flow", math.inf, count, flow_witness(pattern, _violated(bad_cols), s), s
            )
        # the stored coefficients on sampled device sets (tall systems when r > c)
        subs = sample_subsets(n, r, max(8, samples // max(1, len(split))), rng)
        conds = conditions(sub, subs)
        worst = max(worst, float(conds.max()))
        bad = np.flatnonzero(~np.isfinite(conds))
        n_sing += int(bad.size)
        count += subs.shape[0]
        if bad.size and r == cols.size:  # square systems: a singular one is a counterexample
            witness, _ = exactly_singular(
                sub, [tuple(int(i) for i in subs[b]) for b in bad], residues=sub_exact
            )
            if witness is not None:
                return Certificate(False, "flow", math.inf, count, witness, s, n_sing)
    method = "exhaustive" if all_exhaustive else "flow"
    return Certificate(True, method, worst, count, None, s, n_sing)


def _certify_mm_devices(code, rows, exact, max_subsets, samples, seed) -> Certificate:
    """MM codes with several products per device: by classes, else by device subsets."""
    owner, n, s = code.row_owner(), code.n_workers, code.stragglers
    if code.generic:
        split = classes_of(rows, owner, n)
        if split is not None:
            return _certify_classes(rows, owner, split, n, s, max_subsets, samples, seed, exact)
    e = sp.csr_array(rows)
    if math.comb(n, s) <= max_subsets:
        worst, count, witness, method = hetero_scan(e, owner, n, s, max_subsets, seed)
        return Certificate(witness is None, method, worst, count, witness, s)
    worst, count, witness, method = hetero_scan(e, owner, n, s, samples, seed)
    return Certificate(
        witness is None, "sampled", worst, count, witness, s, proven=witness is not None
    )
