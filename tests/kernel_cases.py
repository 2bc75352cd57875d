"""Shared builders for the kernel tests: matrices with chosen dtypes, index types and shapes."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

VALUE_DTYPES = [np.float32, np.float64]
INDEX_DTYPES = [np.int32, np.int64]

# (m, c, density): empty rows, nnz = 0, 1 x 1, rectangular both ways
SHAPES = [
    (1, 1, 1.0),
    (1, 1, 0.0),
    (0, 5, 0.0),
    (7, 0, 0.0),
    (13, 9, 0.0),
    (13, 9, 0.3),
    (9, 40, 0.1),
    (50, 7, 0.5),
    (64, 64, 0.05),
]


def tol(dtype) -> dict:
    return (
        {"rtol": 2e-5, "atol": 2e-5}
        if np.dtype(dtype) == np.float32
        else {"rtol": 1e-12, "atol": 1e-12}
    )


def random_csr(rng, m, c, density, dtype=np.float64, index_dtype=np.int32, empty_rows=True):
    A = sp.random_array((m, c), density=density, format="csr", rng=rng, dtype=np.float64)
    A = sp.csr_array(A, dtype=dtype)
    if empty_rows and m > 2:
        A = A.tolil()
        A[m // 2, :] = 0
        A = sp.csr_array(A, dtype=dtype)
    A.indptr = A.indptr.astype(index_dtype)
    A.indices = A.indices.astype(index_dtype)
    return A


def messy_csr(rng, m, c, nnz, dtype=np.float64, index_dtype=np.int32):
    """A CSR with unsorted and duplicate column indices (scipy sums duplicates)."""
    rows = np.sort(rng.integers(0, m, size=nnz))
    cols = rng.integers(0, c, size=nnz)
    vals = rng.standard_normal(nnz).astype(dtype)
    indptr = np.zeros(m + 1, dtype=index_dtype)
    np.add.at(indptr, rows + 1, 1)
    indptr = np.cumsum(indptr).astype(index_dtype)
    A = sp.csr_array((vals, cols.astype(index_dtype), indptr), shape=(m, c))
    A.indices = A.indices.astype(index_dtype)
    A.indptr = A.indptr.astype(index_dtype)
    return A


def dense(M) -> np.ndarray:
    return M.toarray() if sp.issparse(M) else np.asarray(M)


def assert_canonical(M) -> None:
    """Sorted, distinct column indices in every row, and a consistent indptr."""
    assert M.indptr[0] == 0
    assert M.indptr[-1] == len(M.indices) == len(M.data)
    assert np.all(np.diff(M.indptr) >= 0)
    for i in range(M.shape[0]):
        row = M.indices[M.indptr[i] : M.indptr[i + 1]]
        assert np.all(np.diff(row) > 0), f"row {i} not strictly increasing: {row}"


def scipy_encode(A, E):
    """The oracle: scipy's sum of scaled row blocks."""
    A = sp.csr_array(A)
    n, k = E.shape
    m, c = A.shape
    b = -(-m // k)
    Ap = sp.vstack([A, sp.csr_array((b * k - m, c))]).tocsr() if b * k > m else A
    out = []
    for i in range(n):
        acc = np.zeros((b, c))
        for j in range(k):
            if E[i, j] != 0:
                acc += E[i, j] * Ap[j * b : (j + 1) * b].toarray()
        out.append(acc)
    return out
