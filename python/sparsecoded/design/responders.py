"""Responder-set mathematics: which sets of answering workers decode, and how well.

The designer (:mod:`sparsecoded.design.mv`, :mod:`sparsecoded.design.mm`) and
:func:`sparsecoded.design.certify.certify` both ask these questions, so they live
below both: exact rank of float matrices (modular arithmetic), condition numbers
over many responder sets at once, enumeration and sampling of responder sets,
adversarial sets, the Hall-surplus max-flow test, and the checks for
heterogeneous devices.  See docs/theory.md sections 4, 6 and 8.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.sparse as sp
from scipy.sparse.csgraph import (
    breadth_first_order,
    connected_components,
    maximum_flow,
    structural_rank,
)

__all__ = [
    "classes_of",
    "conditions",
    "exact_full_rank",
    "exactly_singular",
    "exhaustive",
    "hall_surplus_test",
    "hetero_decodable_supports",
    "hetero_scan",
    "mm_adversarial_sets",
    "mm_product_residues",
    "sample_subsets",
    "worst_condition_hetero",
    "worst_condition_mv",
]

_EPS = np.finfo(np.float64).eps

# ---------------------------------------------------------------------------
# exact rank of float matrices

# A prime below 2**31: products of two residues fit in int64.
_PRIME = 2_147_483_629


def exact_full_rank(m: np.ndarray, prime: int = _PRIME) -> bool:
    """Whether a square float matrix is nonsingular in exact arithmetic.

    Every float is a dyadic rational ``mantissa * 2**e``; mapping it to
    ``mantissa * 2**e mod p`` is a ring homomorphism from the dyadic rationals
    to the integers mod p, so a nonzero determinant mod p proves the matrix
    nonsingular.  A zero one is reported as singular; it could be a false
    alarm only if p divides the (exact) determinant's numerator, which for a
    prime near 2**31 and non-adversarial data is negligible.  Used where
    float64 calls a matrix singular that the support says is generically
    invertible: ill-conditioned and singular are then told apart.

    Parameters
    ----------
    m : numpy.ndarray
        Square float64 matrix.
    prime : int
        Modulus, below 2**31.

    Returns
    -------
    bool

    Examples
    --------
    >>> exact_full_rank(np.array([[1.0, 1.0], [1.0, 1.0 + 2.0**-50]]))
    True
    >>> exact_full_rank(np.ones((3, 3)))
    False
    """
    return residue_full_rank(float_residues(m, prime), prime)


def float_residues(m: np.ndarray, prime: int = _PRIME) -> np.ndarray:
    """Each float ``mantissa * 2**e`` as ``mantissa * 2**e mod p`` (int64, in [0, p)).

    A ring homomorphism from the dyadic rationals: sums and products of the
    stored floats, computed exactly, map to sums and products of residues.
    """
    frac, expo = np.frexp(np.asarray(m, dtype=np.float64))
    mant = (frac * 2.0**53).astype(np.int64)  # exact: |frac| < 1
    expo = expo.astype(np.int64) - 53
    res = np.mod(mant, prime)
    for e in np.unique(expo):
        sel = expo == e
        res[sel] = res[sel] * pow(2, int(e), prime) % prime
    return res % prime


def mm_product_residues(a: np.ndarray, b: np.ndarray, prime: int = _PRIME) -> np.ndarray:
    """Residues of the EXACT rows ``a_r kron b_r`` of an MM code.

    ``product_rows()`` holds the rounded float products ``fl(a_rs b_rt)``;
    rounding can make an exactly singular responder set look merely
    ill-conditioned, so exact checks of MM codes multiply the residues of the
    two factors instead (each below 2**31: the product fits in int64).
    """
    ra, rb = float_residues(a, prime), float_residues(b, prime)
    n = ra.shape[0]
    return ((ra[:, :, None] * rb[:, None, :]) % prime).reshape(n, -1)


def residue_full_rank(res: np.ndarray, prime: int = _PRIME) -> bool:
    """Whether a square matrix of residues mod ``prime`` is invertible mod ``prime``."""
    a = np.array(res, dtype=np.int64) % prime
    n = a.shape[0]
    for col in range(n):
        nz = np.flatnonzero(a[col:, col])
        if nz.size == 0:
            return False
        piv = col + nz[0]
        if piv != col:
            a[[col, piv]] = a[[piv, col]]
        inv = pow(int(a[col, col]), prime - 2, prime)
        a[col] = a[col] * inv % prime
        below = a[col + 1 :, col : col + 1]
        a[col + 1 :] = (a[col + 1 :] - below * a[col]) % prime
    return True


# ---------------------------------------------------------------------------
# condition numbers of responder submatrices


def _svals(stack: np.ndarray) -> np.ndarray:
    return np.linalg.svd(stack, compute_uv=False)


# Above this size one SVD costs about a second on a small machine; condition
# numbers are then LAPACK's 1-norm estimates from an LU factorisation (about
# 6x cheaper, within a factor k of the 2-norm value).
LARGE_K = 256


def _cond_1norm(m: np.ndarray) -> float:
    lu, _ = scipy.linalg.lu_factor(m, check_finite=False)
    anorm = float(np.abs(m).sum(axis=0).max())
    rcond, _ = scipy.linalg.lapack.dgecon(lu, anorm, norm="1")
    return math.inf if rcond == 0.0 else 1.0 / rcond


# Work limit of an exhaustive MV check (a few seconds of SVDs); beyond it
# the flow test proves decodability instead.
EXHAUSTIVE_FLOPS = 2.0e9


def exhaustive_cost(k: int) -> float:
    return float(k) ** 3 * (1.0 if k > LARGE_K else 4.0) + 50.0


def conditions(dense: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """Condition numbers of ``dense[subset]`` for each row of ``subsets``.

    2-norm for ``k <= LARGE_K``: singular submatrices (smallest singular value
    at or below ``max(shape) * eps * largest``, numpy's rank tolerance) get
    ``inf``.  Larger square systems use the 1-norm estimate, with ``inf``
    from ``1 / (k eps)`` on.
    """
    if subsets.shape[0] == 0:
        return np.empty(0)
    k = dense.shape[1]
    if k > LARGE_K and subsets.shape[1] == k:
        c = np.array([_cond_1norm(dense[sub]) for sub in subsets])
        c[c >= 1.0 / (k * _EPS)] = np.inf  # numpy rank tolerance, as for the SVD path
        return c
    out = np.empty(subsets.shape[0])
    chunk = max(1, int(4_000_000 // max(1, subsets.shape[1] * k)))
    for lo in range(0, subsets.shape[0], chunk):
        sv = _svals(dense[subsets[lo : lo + chunk]])
        smax, smin = sv[:, 0], sv[:, -1]
        tol = smax * max(subsets.shape[1], k) * _EPS
        with np.errstate(divide="ignore", invalid="ignore"):
            c = smax / smin
        c[(smin <= tol) | (sv.shape[1] < k)] = np.inf
        out[lo : lo + chunk] = c
    return out


def _combinations(n: int, r: int, chunk: int = 8192) -> Iterator[np.ndarray]:
    it = itertools.combinations(range(n), r)
    while True:
        block = list(itertools.islice(it, chunk))
        if not block:
            return
        yield np.asarray(block, dtype=np.int64).reshape(len(block), r)


def exhaustive(dense: np.ndarray, r: int, keep: int = 1000) -> tuple[float, int, list, int]:
    """All r-row subsets: worst condition, count, first ``keep`` singular ones, and how many."""
    worst, count, n_singular = 0.0, 0, 0
    singular: list[tuple[int, ...]] = []
    for subs in _combinations(dense.shape[0], r):
        c = conditions(dense, subs)
        count += subs.shape[0]
        bad = np.flatnonzero(~np.isfinite(c))
        n_singular += bad.size
        singular.extend(tuple(int(i) for i in subs[b]) for b in bad[: max(0, keep - len(singular))])
        worst = max(worst, float(c.max()))
    return worst, count, singular, n_singular


# float64-singular responder sets checked in exact arithmetic, at most
EXACT_CHECKS_SMALL = 1000  # k <= 64: about a millisecond each
EXACT_CHECKS_LARGE = 4
# for coefficients that are not generic every such set matters: more of them
EXACT_CHECKS_GIVEN = 50_000


def exactly_singular(
    dense: np.ndarray,
    subsets: list,
    cap: int | None = None,
    *,
    residues: np.ndarray | None = None,
) -> tuple[tuple[int, ...] | None, int]:
    """First subset singular in exact arithmetic, and how many were left unchecked.

    ``residues``: the system's exact residues (:func:`mm_product_residues` for
    MM codes, whose float rows are rounded products); default: those of
    ``dense`` itself.
    """
    if cap is None:
        cap = EXACT_CHECKS_SMALL if dense.shape[1] <= 64 else EXACT_CHECKS_LARGE
    exact = float_residues(dense) if residues is None else residues
    for sub in subsets[:cap]:
        if not residue_full_rank(exact[list(sub)]):
            return tuple(sub), 0
    return None, max(0, len(subsets) - cap)


def sample_subsets(n: int, r: int, count: int, rng: np.random.Generator) -> np.ndarray:
    if count <= 0:
        return np.empty((0, r), dtype=np.int64)
    keys = rng.random((count, n))
    return np.sort(np.argpartition(keys, r - 1, axis=1)[:, :r], axis=1)


def complement(n: int, removed: Iterable[int]) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    mask[list(removed)] = False
    return np.flatnonzero(mask)


def adversarial_sets(
    support: sp.csr_array, s: int, rng: np.random.Generator, limit: int
) -> np.ndarray:
    """At most ``limit`` responder sets that silence the workers around one block.

    Half of them drop s cyclically consecutive workers (the natural worst
    case of cyclic layouts); the others drop up to s of the workers touching
    a random block (the rest of the s at random).
    """
    n, k = support.shape
    if s == 0 or limit <= 0:
        return np.arange(n)[None, :] if limit > 0 else np.empty((0, n - s), np.int64)
    out = []
    n_cyc = min(n, max(1, limit // 2))
    for t in np.linspace(0, n, n_cyc, endpoint=False).astype(np.int64):
        out.append(complement(n, (t + np.arange(s)) % n))
    csc = sp.csc_array(support)
    for j in rng.choice(k, min(k, limit - len(out)), replace=False):
        touch = rng.permutation(csc.indices[csc.indptr[j] : csc.indptr[j + 1]])[:s]
        keep = np.ones(n, dtype=bool)
        keep[touch] = False
        others = rng.permutation(np.flatnonzero(keep))[: s - touch.size]
        out.append(complement(n, np.concatenate([touch, others])))
    return np.asarray(out, dtype=np.int64)


def worst_condition_mv(
    encoding: sp.csr_array, *, budget: float = 2.0e9, seed: int | None = 0
) -> float:
    """Worst condition number of ``E_W`` over responder sets ``|W| = k``.

    Exhaustive when ``C(n, k) k^3 <= budget``; otherwise adversarial sets
    and random ones within ``budget`` flops (a lower estimate).

    Parameters
    ----------
    encoding : scipy.sparse.csr_array
        ``(n, k)`` encoding matrix.
    budget : float
        Rough flop budget for the SVDs.
    seed : int, optional
        For the sampled sets.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> worst_condition_mv(sp.csr_array(np.eye(3)))
    1.0
    """
    n, k = encoding.shape
    dense = encoding.toarray()
    per = exhaustive_cost(k)
    total = math.comb(n, k)
    if total * per <= budget:
        return exhaustive(dense, k)[0]
    rng = np.random.default_rng(seed)
    count = max(2, int(budget / per))
    adv = adversarial_sets(encoding, n - k, rng, max(1, count // 2))
    subs = np.concatenate([adv, sample_subsets(n, k, count - adv.shape[0], rng)])
    return float(conditions(dense, subs).max())


# ---------------------------------------------------------------------------
# Hall's condition with surplus, by max-flow


def hall_surplus_test(support: sp.csr_array, s: int) -> tuple[bool, np.ndarray | None]:
    """Check ``|N(S)| >= |S| + s`` for every nonempty set S of blocks.

    Network: source -> block (capacity 1, or ``s + 1`` for the block under
    test) -> worker (capacity ``k + s``, so that no minimum cut uses it) ->
    sink (capacity 1).  With block j under test the max flow is ``k + s``
    iff every S containing j satisfies the condition; a smaller flow leaves
    a violating S as the blocks still reachable from the source in the
    residual network.  One max flow per block (docs/theory.md section 4).

    Parameters
    ----------
    support : scipy.sparse.csr_array
        ``(n, k)``; its nonzero pattern is used.
    s : int
        Required surplus (stragglers).

    Returns
    -------
    (bool, numpy.ndarray or None)
        Whether the condition holds; on failure the violating block set S.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> hall_surplus_test(sp.csr_array(np.ones((3, 2))), 1)[0]
    True
    >>> e = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    >>> ok, blocks = hall_surplus_test(sp.csr_array(e), 1)
    >>> ok, blocks.tolist()  # block 2 sits on one worker only
    (False, [2])
    """
    n, k = support.shape
    pat = sp.csc_array(support)
    pat.eliminate_zeros()
    src, sink = 0, k + n + 1
    blocks_to_workers_r = np.repeat(np.arange(k), np.diff(pat.indptr)) + 1
    blocks_to_workers_c = pat.indices + k + 1
    rows = np.concatenate([np.zeros(k, np.int64), blocks_to_workers_r, np.arange(n) + k + 1])
    cols = np.concatenate([np.arange(k) + 1, blocks_to_workers_c, np.full(n, sink)])
    caps = np.concatenate(
        [np.ones(k, np.int32), np.full(pat.nnz, k + s + 1, np.int32), np.ones(n, np.int32)]
    )
    graph = sp.csr_array((caps, (rows, cols)), shape=(sink + 1, sink + 1))
    graph.sort_indices()
    # the source's row holds the edges to blocks 1..k in order
    src_edges = np.arange(graph.indptr[0], graph.indptr[1])
    if k + s > n:  # S = all blocks already fails
        return False, np.arange(k)
    # Once block j passed, every S containing j is fine, so later tests only
    # need the sets inside blocks j+1..k-1: earlier blocks get supply 0 and
    # the flows shrink as the scan goes on.
    for j in range(k):
        graph.data[src_edges[j]] = s + 1
        res = maximum_flow(graph, src, sink, method="dinic")
        if res.flow_value < (k - j) + s:
            return False, _violating_set(graph, res)
        graph.data[src_edges[j]] = 0
    return True, None


def _violating_set(graph, res) -> np.ndarray:
    k = int(graph.indptr[1] - graph.indptr[0])
    residual = sp.csr_array(graph - res.flow)
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reach = breadth_first_order(residual, 0, directed=True, return_predecessors=False)
    return (np.sort(reach[(reach >= 1) & (reach <= k)]) - 1).astype(np.int64)


def flow_witness(support: sp.csr_array, blocks: np.ndarray, s: int) -> tuple[int, ...]:
    """k workers that cannot decode: silence s workers that touch ``blocks``.

    Hall's condition fails for ``blocks``: ``|N(blocks)| < |blocks| + s``, so
    after silencing s of ``N(blocks)`` fewer than ``|blocks|`` rows carry them.
    """
    n = support.shape[0]
    csc = sp.csc_array(support)
    touch = np.unique(
        np.concatenate([csc.indices[csc.indptr[j] : csc.indptr[j + 1]] for j in blocks])
    )
    removed = list(touch[:s])
    if len(removed) < s:
        rest = np.setdiff1d(np.arange(n), touch)
        removed += list(rest[: s - len(removed)])
    return tuple(int(i) for i in complement(n, removed))


# ---------------------------------------------------------------------------
# heterogeneous devices


def _device_subsets(n: int, s: int) -> Iterator[tuple[int, ...]]:
    return itertools.combinations(range(n), s)


def hetero_decodable_supports(
    rows: np.ndarray,
    cols: np.ndarray,
    owner: np.ndarray,
    n_rows: int,
    k: int,
    s: int,
    n_devices: int,
    *,
    max_subsets: int = 20000,
) -> bool:
    """Generic decodability after silencing any s devices (structural rank).

    Returns False too when there are more than ``max_subsets`` device sets
    (the layout is then not proven and the caller keeps the safe design).
    """
    if math.comb(n_devices, s) > max_subsets:
        return False
    pattern = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(n_rows, k))
    for dead in _device_subsets(n_devices, s):
        keep = ~np.isin(owner, dead)
        if structural_rank(pattern[np.flatnonzero(keep)]) < k:
            return False
    return True


def _hetero_responder_rows(owner: np.ndarray, dead: Iterable[int]) -> np.ndarray:
    return np.flatnonzero(~np.isin(owner, list(dead)))


def worst_condition_hetero(
    encoding: sp.csr_array, owner: np.ndarray, n: int, s: int, *, max_subsets: int = 2000
) -> float:
    """Worst condition of the surviving rows over sets of s silenced devices.

    The surviving rows form a tall ``(rows, k)`` system (decoded by least
    squares or any k of them); its 2-norm condition number is reported.
    Exhaustive up to ``max_subsets`` device sets, else the ones silencing the
    largest devices plus random ones.
    """
    return hetero_scan(encoding, owner, n, s, max_subsets, None)[0]


def hetero_scan(encoding, owner, n, s, max_subsets, seed):
    dense = encoding.toarray()
    k = dense.shape[1]
    total = math.comb(n, s)
    if total <= max_subsets:
        sets: Iterable[tuple[int, ...]] = _device_subsets(n, s)
        method = "exhaustive"
    else:
        rng = np.random.default_rng(seed)
        caps = np.bincount(owner, minlength=n)
        largest = tuple(int(i) for i in np.argsort(-caps, kind="stable")[:s])
        rand = [tuple(rng.choice(n, s, replace=False).tolist()) for _ in range(max_subsets)]
        sets = [largest, *rand]
        method = "sampled"
    worst, count, witness = 0.0, 0, None
    for dead in sets:
        sub = dense[_hetero_responder_rows(owner, dead)]
        count += 1
        if sub.shape[0] < k:
            c = math.inf
        else:
            sv = _svals(sub)
            c = math.inf if sv[-1] <= sv[0] * max(sub.shape) * _EPS else float(sv[0] / sv[-1])
        if not math.isfinite(c) and witness is None:
            witness = tuple(sorted(set(range(n)) - set(dead)))
        worst = max(worst, c)
    return worst, count, witness, method


def mm_adversarial_sets(
    a: np.ndarray, b: np.ndarray, s: int, rng: np.random.Generator, variants: int = 3
) -> np.ndarray:
    n, ka = a.shape
    kb = b.shape[1]
    groups = [np.flatnonzero(a[:, p]) for p in range(ka)]
    groups += [np.flatnonzero(b[:, q]) for q in range(kb)]
    groups += [np.flatnonzero(a[:, p] & b[:, q]) for p in range(ka) for q in range(kb)]
    out = []
    for g in groups:
        for _ in range(variants):
            touch = rng.permutation(g)[:s]
            keep = np.ones(n, dtype=bool)
            keep[touch] = False
            rest = rng.permutation(np.flatnonzero(keep))[: s - touch.size]
            out.append(complement(n, np.concatenate([touch, rest]).astype(np.int64)))
    return np.asarray(out, dtype=np.int64).reshape(len(out), n - s)


# ---------------------------------------------------------------------------
# several rows per device: the classes of a block-diagonal code


def classes_of(pattern, owner: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Split rows and columns into the connected components of the support.

    Returns the (rows, columns) of each component when no device has two
    rows in one component (then each component is a code with at most one
    row per device and the exact flow test applies to it); else None.
    """
    pat = sp.csr_array(pattern != 0, dtype=np.float64)
    n_rows, n_cols = pat.shape
    graph = sp.block_array([[None, pat], [pat.T, None]], format="csr")
    count, label = connected_components(graph, directed=False)
    row_label, col_label = label[:n_rows], label[n_rows:]
    out = []
    for c in np.unique(col_label):
        rows = np.flatnonzero(row_label == c)
        if np.bincount(owner[rows], minlength=n).max(initial=0) > 1:
            return None
        out.append((rows, np.flatnonzero(col_label == c)))
    return out
