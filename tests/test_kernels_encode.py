"""encode_row_blocks and lincomb against scipy.sparse."""

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
    scipy_encode,
    tol,
)

from sparsecoded.kernels import encode_row_blocks, lincomb


def low_weight_E(rng, n, k, w):
    E = np.zeros((n, k))
    for i in range(n):
        a = (i * k) // n
        for q in range(w):
            E[i, (a + q) % k] = rng.standard_normal()
    return E


def check_blocks(blocks, A, E, dtype, index_dtype):
    ref = scipy_encode(A, E)
    n, k = E.shape
    b = -(-A.shape[0] // k)
    assert len(blocks) == n
    for got, want in zip(blocks, ref, strict=True):
        assert isinstance(got, sp.csr_array)
        assert got.shape == (b, A.shape[1])
        assert got.dtype == dtype
        assert got.indices.dtype == index_dtype
        assert got.indptr.dtype == index_dtype
        assert_canonical(got)
        np.testing.assert_allclose(got.toarray(), want, **tol(dtype))


@pytest.mark.parametrize("dtype", VALUE_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("k", [1, 3, "m"])
def test_encode_matches_scipy(rng, dtype, index_dtype, shape, k):
    m, c, density = shape
    k = max(m, 1) if k == "m" else k
    A = random_csr(rng, m, c, density, dtype, index_dtype)
    E = rng.standard_normal((5, k))
    E[rng.random(E.shape) < 0.4] = 0
    check_blocks(encode_row_blocks(A, E), A, E, dtype, index_dtype)


@pytest.mark.parametrize("w", [1, 2, 3, 4, 7, 16])
def test_encode_weights_n20_k16(rng, w):
    A = random_csr(rng, 203, 50, 0.1)  # 16 does not divide 203
    E = low_weight_E(rng, 20, 16, w)
    check_blocks(encode_row_blocks(A, E), A, E, np.float64, np.int32)


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_encode_unsorted_and_duplicate_indices(rng, index_dtype):
    A = messy_csr(rng, 40, 30, 400, index_dtype=index_dtype)
    assert not A.has_canonical_format
    for w in (1, 2, 4):
        E = low_weight_E(rng, 6, 4, w)
        check_blocks(encode_row_blocks(A, E), A, E, np.float64, index_dtype)


def test_encode_all_zero_row_of_E_gives_empty_block(rng):
    A = random_csr(rng, 12, 5, 0.5)
    E = rng.standard_normal((3, 4))
    E[1] = 0
    blocks = encode_row_blocks(A, E)
    assert blocks[1].shape == (3, 5)
    assert blocks[1].nnz == 0


def test_encode_accepts_other_formats_and_dense(rng):
    A = random_csr(rng, 20, 6, 0.4)
    E = rng.standard_normal((4, 3))
    want = [dense(b) for b in encode_row_blocks(A, E)]
    for variant in (A.tocsc(), A.tocoo(), sp.csr_matrix(A), A.toarray()):
        got = encode_row_blocks(variant, sp.csr_array(E))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g.toarray(), w)


def test_encode_integer_input_becomes_float64_and_E_follows_A(rng):
    A = sp.csr_array(rng.integers(0, 3, size=(6, 4)))
    blocks = encode_row_blocks(A, np.ones((2, 2)))
    assert blocks[0].dtype == np.float64
    blocks = encode_row_blocks(random_csr(rng, 6, 4, 0.5, np.float32), np.ones((2, 2)))
    assert blocks[0].dtype == np.float32


def test_encode_threads_agree(rng):
    A = random_csr(rng, 3000, 400, 0.02)
    E = low_weight_E(rng, 20, 16, 4)
    serial = [b.toarray() for b in encode_row_blocks(A, E, n_threads=1)]
    for g, s in zip(encode_row_blocks(A, E), serial, strict=True):
        np.testing.assert_array_equal(g.toarray(), s)


def test_encode_from_several_python_threads(rng):
    A = random_csr(rng, 2000, 300, 0.03)
    E = low_weight_E(rng, 10, 8, 3)
    serial = [b.toarray() for b in encode_row_blocks(A, E, n_threads=1)]
    results = [None] * 6

    def work(t):
        results[t] = [b.toarray() for b in encode_row_blocks(A, E, n_threads=2)]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for res in results:
        assert res is not None
        for g, s in zip(res, serial, strict=True):
            np.testing.assert_array_equal(g, s)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(0, 30),
    c=st.integers(0, 12),
    k=st.integers(1, 8),
    n=st.integers(1, 6),
    density=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
    messy=st.booleans(),
)
def test_encode_property(m, c, k, n, density, seed, messy):
    rng = np.random.default_rng(seed)
    if messy and m > 0 and c > 0:
        A = messy_csr(rng, m, c, int(density * m * c) + 1)
    else:
        A = random_csr(rng, m, c, density)
    E = rng.standard_normal((n, k))
    E[rng.random(E.shape) < 0.5] = 0
    check_blocks(encode_row_blocks(A, E), A, E, np.float64, A.indices.dtype)


# ---- lincomb ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", VALUE_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lincomb_matches_scipy(rng, dtype, index_dtype, shape):
    m, c, density = shape
    mats = [random_csr(rng, m, c, density, dtype, index_dtype) for _ in range(5)]
    coeffs = [1.5, 0.0, -2.0, 0.25, 3.0]
    got = lincomb(mats, coeffs)
    want = sum(cf * M.toarray().astype(np.float64) for cf, M in zip(coeffs, mats, strict=True))
    assert isinstance(got, sp.csr_array)
    assert got.dtype == dtype
    assert got.indices.dtype == index_dtype
    assert_canonical(got)
    np.testing.assert_allclose(got.toarray(), want, **tol(dtype))


def test_lincomb_unsorted_duplicates_and_mixed_index_types(rng):
    a = messy_csr(rng, 30, 20, 200, index_dtype=np.int32)
    b = messy_csr(rng, 30, 20, 200, index_dtype=np.int64)
    got = lincomb([a, b, a.tocoo()], [1.0, -1.0, 0.5])
    assert got.indices.dtype == np.int64
    assert_canonical(got)
    np.testing.assert_allclose(got.toarray(), 1.5 * a.toarray() - b.toarray(), atol=1e-12)


def test_lincomb_dense_member_gives_dense(rng):
    a = random_csr(rng, 8, 6, 0.3)
    d = rng.standard_normal((8, 6))
    got = lincomb([a, d], [2.0, -1.0])
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, 2 * a.toarray() - d)


def test_lincomb_threads_agree(rng):
    mats = [random_csr(rng, 2000, 500, 0.02) for _ in range(4)]
    c = [1.0, -0.5, 2.0, 0.3]
    np.testing.assert_array_equal(
        lincomb(mats, c, n_threads=1).toarray(), lincomb(mats, c).toarray()
    )
