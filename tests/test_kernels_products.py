"""matvec and matmat against scipy.sparse."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_cases import (
    INDEX_DTYPES,
    SHAPES,
    VALUE_DTYPES,
    assert_canonical,
    dense,
    messy_csr,
    random_csr,
    tol,
)

from sparsecoded import kernels
from sparsecoded.kernels import matmat, matvec


@pytest.mark.parametrize("dtype", VALUE_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matvec_matches_scipy(rng, dtype, index_dtype, shape):
    m, c, density = shape
    A = random_csr(rng, m, c, density, dtype, index_dtype)
    x = rng.standard_normal(c).astype(dtype)
    y = matvec(A, x)
    assert y.shape == (m,)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, A.toarray().astype(np.float64) @ x, **tol(dtype))


@pytest.mark.parametrize("dtype", VALUE_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("q", [1, 3, 8, 16, 33])
def test_matvec_matrix_matches_scipy(rng, dtype, index_dtype, shape, q):
    m, c, density = shape
    A = random_csr(rng, m, c, density, dtype, index_dtype)
    X = rng.standard_normal((c, q)).astype(dtype)
    Y = matvec(A, X)
    assert Y.shape == (m, q)
    assert Y.flags.c_contiguous
    np.testing.assert_allclose(Y, A.toarray().astype(np.float64) @ X, **tol(dtype))
    np.testing.assert_array_equal(matvec(A, np.asfortranarray(X)), Y)
    np.testing.assert_array_equal(matmat(A, X), Y)


def test_matvec_unsorted_duplicates(rng):
    A = messy_csr(rng, 50, 30, 600)
    x = rng.standard_normal(30)
    np.testing.assert_allclose(matvec(A, x), A @ x, atol=1e-12)
    X = rng.standard_normal((30, 5))
    np.testing.assert_allclose(matvec(A, X), A @ X, atol=1e-12)


def test_matvec_dtype_promotion(rng):
    A = random_csr(rng, 10, 6, 0.5, np.float32)
    assert matvec(A, np.ones(6, np.float32)).dtype == np.float32
    assert matvec(A, np.ones(6)).dtype == np.float64
    B = sp.csr_array(rng.integers(0, 4, size=(5, 6)))
    np.testing.assert_allclose(matvec(B, np.arange(6)), B.toarray() @ np.arange(6))


def test_matvec_accepts_all_formats(rng):
    A = random_csr(rng, 30, 20, 0.2)
    x = rng.standard_normal(20)
    for variant in (A, sp.csr_matrix(A), A.tocsc(), A.tocoo(), sp.coo_matrix(A), A.toarray()):
        np.testing.assert_allclose(matvec(variant, x), A @ x, atol=1e-12)


@pytest.mark.parametrize("dtype", VALUE_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize(
    ("m", "n", "p", "da", "db"),
    [
        (1, 1, 1, 1.0, 1.0),
        (0, 4, 3, 0, 0.5),
        (5, 0, 3, 0, 0),
        (20, 30, 25, 0.02, 0.03),
        (20, 30, 25, 0.3, 0.3),
        (40, 10, 60, 0.05, 0.02),
        (7, 7, 7, 0.0, 0.5),
    ],
)
def test_matmat_sparse_matches_scipy(rng, dtype, index_dtype, m, n, p, da, db):
    A = random_csr(rng, m, n, da, dtype, index_dtype)
    B = random_csr(rng, n, p, db, dtype, index_dtype)
    C = matmat(A, B)
    want = A.toarray().astype(np.float64) @ B.toarray()
    assert C.shape == (m, p)
    assert C.dtype == dtype
    if sp.issparse(C):
        assert isinstance(C, sp.csr_array)
        assert C.indices.dtype == index_dtype
        assert not C.has_sorted_indices  # first-touch order, flagged as such
        C.sort_indices()  # then no duplicates may remain
        assert_canonical(C)
    np.testing.assert_allclose(dense(C), want, **tol(dtype))


def test_matmat_output_kind_follows_estimate(rng):
    sparse_out = matmat(random_csr(rng, 200, 200, 0.005), random_csr(rng, 200, 200, 0.005))
    assert isinstance(sparse_out, sp.csr_array)
    dense_out = matmat(random_csr(rng, 100, 100, 0.2), random_csr(rng, 100, 100, 0.2))
    assert isinstance(dense_out, np.ndarray)
    assert (
        kernels.estimated_density((100, 100), 2000, (100, 100), 2000) > kernels.DENSE_OUTPUT_DENSITY
    )


@pytest.mark.parametrize("n", [300, 3000])
def test_matmat_structured_zero_product_stays_sparse(n):
    """The uniform estimate says dense (about 0.39 here); the exact bound says 0 entries.

    Before the bound, this returned an n x n dense array of zeros (72 MB at
    n = 3000; 20 GB at n = 50000) where scipy returns an empty sparse matrix.
    """
    A = sp.csr_array((np.ones(n), (np.arange(n), np.zeros(n, int))), shape=(n, 2))
    B = sp.csr_array((np.ones(n), (np.ones(n, int), np.arange(n))), shape=(2, n))
    assert kernels.estimated_density(A.shape, A.nnz, B.shape, B.nnz) > 0.25
    C = matmat(A, B)
    assert isinstance(C, sp.csr_array)
    assert C.shape == (n, n)
    assert C.nnz == 0
    assert (A @ B).nnz == 0


def test_matmat_nnz_upper_bound_matches_structure(rng):
    from sparsecoded._validation import as_csr

    for m, n, p, da, db in [(40, 30, 50, 0.1, 0.1), (5, 7, 3, 0.9, 0.9), (0, 3, 4, 0, 0)]:
        A = messy_csr(rng, m, n, int(da * m * n) + 1) if m else sp.csr_array((m, n))
        B = messy_csr(rng, n, p, int(db * n * p) + 1)
        ub = kernels.product_nnz_upper_bound(as_csr(A), as_csr(B))
        row_len = np.diff(B.indptr)  # stored entries, duplicates counted, as the bound does
        want = sum(
            min(p, int(row_len[A.indices[A.indptr[i] : A.indptr[i + 1]]].sum())) for i in range(m)
        )
        assert ub == want
        assert ub >= (A @ B).nnz
    # a structured product that really is full still goes dense
    A = sp.csr_array(np.ones((30, 2)))
    B = sp.csr_array(np.ones((2, 30)))
    C = matmat(A, B)
    assert isinstance(C, np.ndarray)
    np.testing.assert_allclose(C, 2 * np.ones((30, 30)))


def test_matmat_unsorted_duplicates_both_paths(rng):
    for density in (0.01, 0.5):
        A = messy_csr(rng, 40, 30, int(density * 1200) + 5)
        B = messy_csr(rng, 30, 50, int(density * 1500) + 5)
        np.testing.assert_allclose(dense(matmat(A, B)), (A @ B).toarray(), atol=1e-12)


def test_matmat_mixed_index_types_upcast(rng):
    A = random_csr(rng, 50, 40, 0.01, index_dtype=np.int32)
    B = random_csr(rng, 40, 60, 0.01, index_dtype=np.int64)
    C = matmat(A, B)
    assert isinstance(C, sp.csr_array)
    assert C.indices.dtype == np.int64
    np.testing.assert_allclose(C.toarray(), (A @ B).toarray())


@pytest.mark.parametrize("fn", ["matvec", "matvecs", "matmat_sparse", "matmat_dense"])
def test_threads_agree_and_python_threads_agree(rng, fn):
    A = random_csr(rng, 4000, 3000, 0.004)
    operand = {
        "matvec": rng.standard_normal(3000),
        "matvecs": rng.standard_normal((3000, 8)),
        "matmat_sparse": random_csr(rng, 3000, 2000, 0.001),
        "matmat_dense": random_csr(rng, 3000, 300, 0.05),
    }[fn]
    f = matvec if fn.startswith("matvec") else matmat
    serial = dense(f(A, operand, n_threads=1))
    np.testing.assert_array_equal(dense(f(A, operand)), serial)
    results = [None] * 6

    def work(t):
        results[t] = dense(f(A, operand, n_threads=2))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for r in results:
        np.testing.assert_array_equal(r, serial)


@settings(max_examples=50, deadline=None)
@given(
    m=st.integers(0, 40),
    c=st.integers(0, 40),
    density=st.floats(0, 1),
    q=st.integers(0, 20),
    seed=st.integers(0, 2**32 - 1),
    messy=st.booleans(),
    n_threads=st.sampled_from([None, 1, 2, 3]),
)
def test_matvec_property(m, c, density, q, seed, messy, n_threads):
    rng = np.random.default_rng(seed)
    A = (
        messy_csr(rng, m, c, int(density * m * c) + 1)
        if messy and m and c
        else random_csr(rng, m, c, density)
    )
    x = rng.standard_normal(c)
    np.testing.assert_allclose(matvec(A, x, n_threads=n_threads), A @ x, rtol=1e-12, atol=1e-12)
    X = rng.standard_normal((c, q))
    np.testing.assert_allclose(matvec(A, X, n_threads=n_threads), A @ X, rtol=1e-12, atol=1e-12)


def test_resolve_threads():
    import sparsecoded

    assert kernels.resolve_threads(1) == 1
    expected = sparsecoded.default_threads() if sparsecoded.openmp_available() else 1
    assert kernels.resolve_threads() == expected
    assert kernels.resolve_threads(None) >= 1


def test_matmat_on_a_very_wide_b_uses_only_its_columns(rng):
    from sparsecoded.kernels import COMPACT_COLUMNS

    p = 4 * COMPACT_COLUMNS  # wide and sparse: the compact path
    A = sp.random_array((50, 40), density=0.2, format="csr", rng=rng)
    B = sp.random_array((40, p), density=2e-6, format="csr", rng=rng)
    got = sp.csr_array(matmat(A, B))
    want = sp.csr_array(A @ B)
    assert got.shape == want.shape
    assert abs(got - want).max() <= 1e-12 * max(abs(want).max(), 1.0)
    # 2**62 columns: the markers of that width could never be allocated
    huge = sp.csr_array(
        (np.array([1.0, 3.0]), np.array([0, 2**62 - 1]), np.array([0, 1, 1, 2])), shape=(3, 2**62)
    )
    one = sp.csr_array((np.array([2.0]), np.array([0]), np.array([0, 1])), shape=(1, 3))
    C = matmat(one, huge)
    assert C.shape == (1, 2**62)
    assert C.indices.tolist() == [0]
    assert C.data.tolist() == [2.0]
    bad = sp.csr_array((1, p))
    bad.indices = np.array([p + 3], dtype=np.int64)
    bad.indptr = np.array([0, 1], dtype=np.int64)
    bad.data = np.array([1.0])
    with pytest.raises(ValueError, match="B has column index"):
        matmat(sp.csr_array(np.ones((1, 1))), bad)
