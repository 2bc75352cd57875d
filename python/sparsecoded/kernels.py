"""Native sparse kernels.  PLACEHOLDER: scipy versions until the C++ core lands."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def encode_row_blocks(A, E, *, n_threads=None):
    A = sp.csr_array(A)
    E = sp.csr_array(E)
    n, k = E.shape
    m, c = A.shape
    b = -(-m // k)
    pad = sp.csr_array((b * k - m, c), dtype=A.dtype)
    Ap = sp.csr_array(sp.vstack([A, pad]))
    blocks = [Ap[j * b : (j + 1) * b] for j in range(k)]
    out = []
    for i in range(n):
        acc = sp.csr_array((b, c), dtype=np.result_type(A.dtype, E.dtype))
        for j, v in zip(E.indices[E.indptr[i] : E.indptr[i + 1]], E.data[E.indptr[i] : E.indptr[i + 1]]):
            acc = acc + v * blocks[j]
        acc.sort_indices()
        out.append(sp.csr_array(acc))
    return out


def matvec(A, x, *, n_threads=None):
    return np.asarray(sp.csr_array(A) @ np.asarray(x))


def matmat(A, B, *, n_threads=None):
    if sp.issparse(B):
        return sp.csr_array(sp.csr_array(A) @ sp.csr_array(B))
    return np.asarray(sp.csr_array(A) @ np.asarray(B))


def lincomb(mats, coeffs, *, n_threads=None):
    acc = None
    for M, c in zip(mats, coeffs):
        acc = c * sp.csr_array(M) if acc is None else acc + c * sp.csr_array(M)
    return sp.csr_array(acc)
