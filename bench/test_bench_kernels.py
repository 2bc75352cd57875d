"""Kernel benchmarks: scipy (or a dense code) and ours side by side, each result checked.

Run: ``pytest bench --benchmark-enable`` (see bench/README.md). Ratios are
read from the same run, never asserted.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import SMALL, row_uniform_csr

from sparsecoded import _core, kernels

try:  # the second baseline: Intel MKL through sparse_dot_mkl, threads set by threadpoolctl
    import sparse_dot_mkl
    from threadpoolctl import threadpool_limits

    MKL_SKIP = None
except Exception as exc:  # not installable (non-x86), or the MKL runtime not found
    sparse_dot_mkl = None
    MKL_SKIP = f"MKL baseline unavailable: {type(exc).__name__}: {exc}"

WHO = ["scipy", "mkl-1t", "mkl-2t", "ours-1t", "ours-2t"]


def run_who(benchmark, who, ours, scipy_fn, mkl_fn, opts):
    """Time one entry; records the thread count and our SIMD variant in the JSON."""
    if who.startswith("mkl") and MKL_SKIP:
        pytest.skip(MKL_SKIP)
    nt = 2 if who.endswith("2t") else 1
    benchmark.extra_info["threads"] = nt
    benchmark.extra_info["isa"] = _core._isa()
    benchmark.extra_info["vector_bits"] = _core._isa_vector_bits()
    if who == "scipy":
        return benchmark.pedantic(scipy_fn, **opts)
    if who.startswith("mkl"):
        with threadpool_limits(limits=nt, user_api="blas"):
            return benchmark.pedantic(mkl_fn, **opts)
    return benchmark.pedantic(lambda: ours(nt), **opts)


ROUNDS = {"rounds": 5, "iterations": 1, "warmup_rounds": 1}
HEAVY = {"rounds": 3, "iterations": 1, "warmup_rounds": 0}


def dims(full_size, m, c):
    return (m, c) if full_size else (max(1, m // SMALL), max(1, c // SMALL))


def dense_of(C):
    return C.toarray() if sp.issparse(C) else np.asarray(C)


# ---- SpMV -------------------------------------------------------------------

SPMV_CASES = [(60000, 40000, 0.005), (200000, 50000, 0.01)]
_spmv_cache: dict = {}


def spmv_case(rng, full_size, case):
    key = (case, full_size)
    if key not in _spmv_cache:
        _spmv_cache.clear()  # the 10^8-nonzero case needs the memory
        m, c = dims(full_size, *case[:2])
        A = row_uniform_csr(rng, m, c, case[2] if full_size else min(0.5, case[2] * SMALL))
        _spmv_cache[key] = (A, rng.standard_normal(c))
    return _spmv_cache[key]


@pytest.mark.parametrize("case", SPMV_CASES, ids=lambda t: f"{t[0]}x{t[1]}@{t[2]:.1%}")
@pytest.mark.parametrize("who", WHO)
def test_spmv(benchmark, rng, full_size, case, who):
    A, x = spmv_case(rng, full_size, case)
    benchmark.group = f"spmv {case[0]}x{case[1]} at {case[2]:.1%}"
    # bytes a kernel must move at least: values, indices, indptr, y, x (for the limit table)
    benchmark.extra_info["bytes"] = int(
        A.data.nbytes + A.indices.nbytes + A.indptr.nbytes + 8 * A.shape[0] + x.nbytes
    )
    y = run_who(
        benchmark,
        who,
        lambda nt: kernels.matvec(A, x, n_threads=nt),
        lambda: A @ x,
        lambda: sparse_dot_mkl.dot_product_mkl(A, x),
        ROUNDS,
    )
    np.testing.assert_allclose(y, A @ x, rtol=1e-10, atol=1e-10)


# ---- sparse x dense, 32 columns -------------------------------------------------


@pytest.mark.parametrize("who", WHO)
def test_spmm_dense_32(benchmark, rng, full_size, who):
    A, _ = spmv_case(rng, full_size, SPMV_CASES[0])
    X = rng.standard_normal((A.shape[1], 32))
    benchmark.group = "sparse x dense, 60000x40000 at 0.5% times 40000x32"
    benchmark.extra_info["flops"] = int(2 * A.nnz * X.shape[1])
    Y = run_who(
        benchmark,
        who,
        lambda nt: kernels.matmat(A, X, n_threads=nt),
        lambda: A @ X,
        lambda: sparse_dot_mkl.dot_product_mkl(A, X),
        ROUNDS,
    )
    np.testing.assert_allclose(Y, A @ X, rtol=1e-10, atol=1e-10)


# ---- sparse x sparse ---------------------------------------------------------

SPGEMM_CASES = {
    # sparse product: 20000^2 at 0.1% squared, about 2% of entries nonzero
    "sparse-out": ((20000, 20000, 0.001), (20000, 20000, 0.001)),
    # a coded block times a column block: the product is about 40% full
    "dense-out": ((1250, 20000, 0.005), (20000, 1250, 0.005)),
}


@pytest.mark.parametrize("case", list(SPGEMM_CASES))
@pytest.mark.parametrize("who", ["scipy", "ours"])
def test_spgemm(benchmark, rng, full_size, case, who):
    (m, n, da), (_, p, db) = SPGEMM_CASES[case]
    m, n = dims(full_size, m, n)
    p = dims(full_size, p, 1)[0]
    scale = 1 if full_size else SMALL
    A = sp.random_array((m, n), density=min(1.0, da * scale), format="csr", rng=rng)
    B = sp.random_array((n, p), density=min(1.0, db * scale), format="csr", rng=rng)
    benchmark.group = f"sparse x sparse, {case}"
    if who == "scipy":
        C = benchmark.pedantic(lambda: A @ B, **ROUNDS)
    else:
        C = benchmark.pedantic(lambda: kernels.matmat(A, B), **ROUNDS)
    np.testing.assert_allclose(dense_of(C), (A @ B).toarray(), rtol=1e-10, atol=1e-10)


# ---- encoding, n = 20, k = 16 -----------------------------------------------------

N, K = 20, 16
ENC_SHAPE = (10000, 10000, 0.005)


def low_weight_E(rng, w):
    """Cyclic supports of w consecutive blocks from evenly spread starts (SPEC section 2)."""
    E = np.zeros((N, K))
    for i in range(N):
        start = (i * K) // N
        for q in range(w):
            E[i, (start + q) % K] = rng.standard_normal()
    return E


def scipy_encode(A, E):
    """The baseline: slice the k row blocks, then sum the scaled blocks per worker."""
    m, c = A.shape
    b = -(-m // K)
    blocks = [A[j * b : (j + 1) * b] for j in range(K)]
    blocks = [
        blk if blk.shape[0] == b else sp.vstack([blk, sp.csr_array((b - blk.shape[0], c))]).tocsr()
        for blk in blocks
    ]
    out = []
    for i in range(N):
        acc = sp.csr_array((b, c))
        for j in np.flatnonzero(E[i]):
            acc = acc + E[i, j] * blocks[j]
        out.append(acc)
    return out


_enc_cache: dict = {}


def enc_matrix(rng, full_size):
    if full_size not in _enc_cache:
        m, c = dims(full_size, *ENC_SHAPE[:2])
        density = ENC_SHAPE[2] if full_size else min(1.0, ENC_SHAPE[2] * SMALL)
        _enc_cache[full_size] = sp.random_array((m, c), density=density, format="csr", rng=rng)
    return _enc_cache[full_size]


def check_encoded(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.toarray(), w.toarray(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("w", range(1, K + 1))
@pytest.mark.parametrize("who", ["scipy", "ours"])
def test_encode(benchmark, rng, full_size, w, who):
    A = enc_matrix(rng, full_size)
    E = low_weight_E(rng, w)
    benchmark.group = f"encode n=20 k=16 w={w:02d}"
    opts = HEAVY if w > 8 else ROUNDS
    if who == "scipy":
        got = benchmark.pedantic(lambda: scipy_encode(A, E), **opts)
    else:
        got = benchmark.pedantic(lambda: kernels.encode_row_blocks(A, E), **opts)
    check_encoded(got, scipy_encode(A, E))


@pytest.mark.parametrize("who", ["dense-MDS scipy", "dense-MDS ours", "low-weight w=4 ours"])
def test_encode_vs_dense_mds(benchmark, rng, full_size, who):
    """What the low weight buys: w = 4 (the bound for n=20, k=16) against w = k = 16."""
    A = enc_matrix(rng, full_size)
    E = rng.standard_normal((N, K)) if who.startswith("dense") else low_weight_E(rng, 4)
    benchmark.group = "encode n=20 k=16: low weight vs dense MDS"
    if who == "dense-MDS scipy":
        got = benchmark.pedantic(lambda: scipy_encode(A, E), **HEAVY)
    else:
        got = benchmark.pedantic(lambda: kernels.encode_row_blocks(A, E), **HEAVY)
    check_encoded(got, scipy_encode(A, E))
