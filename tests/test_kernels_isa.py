"""Every instruction-set variant of the SpMV / SpMM row loops, forced one at a time, against scipy.

The variants (generic C++, AVX2, AVX-512) are chosen at run time; here each is
forced through ``_core._set_isa`` so that the one the CPU would not pick by
itself is tested too (the generic loop is the only one on aarch64). A variant
this CPU cannot run is skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from kernel_cases import INDEX_DTYPES, VALUE_DTYPES, messy_csr, tol

from sparsecoded import _core, kernels
from sparsecoded.kernels import matvec

ALL_ISAS = ["generic", "avx2", "avx512"]


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    name = request.param
    if name not in _core._isa_supported():
        pytest.skip(f"{name} not supported here (this CPU/build runs {_core._isa_supported()})")
    _core._set_isa(name)
    try:
        yield name
    finally:
        _core._set_isa("auto")


def ragged_csr(rng, dtype, index_dtype, m=70, c=300):
    """Row lengths 0..69: every tail length of the 8- and 16-wide loops, some long rows."""
    rows = []
    for i in range(m):
        n = i if i < 40 else int(rng.integers(40, 200))
        rows.append(np.sort(rng.choice(c, size=min(n, c), replace=False)))
    indptr = np.zeros(m + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate(rows) if indptr[-1] else np.zeros(0, dtype=np.int64)
    data = rng.standard_normal(int(indptr[-1])).astype(dtype)
    A = sp.csr_array((data, indices.astype(index_dtype), indptr.astype(index_dtype)), shape=(m, c))
    A.indices = A.indices.astype(index_dtype)
    A.indptr = A.indptr.astype(index_dtype)
    return A


def test_the_variant_is_reported_and_forced(isa):
    assert _core._isa() == isa
    assert kernels.simd_variant() == isa
    assert _core._isa_vector_bits() == {"generic": 128, "avx2": 256, "avx512": 512}[isa]


@pytest.mark.parametrize("dtype", VALUE_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_matvec_each_variant_matches_scipy(isa, rng, dtype, index_dtype):
    A = ragged_csr(rng, dtype, index_dtype)
    x = rng.standard_normal(A.shape[1]).astype(dtype)
    want = A.toarray().astype(np.float64) @ x
    for nt in (1, 2):
        y = matvec(A, x, n_threads=nt)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, want, **tol(dtype))


@pytest.mark.parametrize("dtype", VALUE_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("q", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40, 64, 67])
def test_matvecs_each_variant_matches_scipy(isa, rng, dtype, index_dtype, q):
    A = ragged_csr(rng, dtype, index_dtype, m=45)
    X = rng.standard_normal((A.shape[1], q)).astype(dtype)
    Y = matvec(A, X, n_threads=2)
    assert Y.shape == (A.shape[0], q)
    np.testing.assert_allclose(Y, A.toarray().astype(np.float64) @ X, **tol(dtype))


def test_variants_agree_on_a_large_matrix(rng):
    """Big enough for two threads and many rows; each variant against scipy and the generic one."""
    A = sp.random_array((3000, 2000), density=0.02, format="csr", rng=rng)
    x = rng.standard_normal(2000)
    X = rng.standard_normal((2000, 32))
    got = {}
    try:
        for name in _core._isa_supported():
            _core._set_isa(name)
            got[name] = (matvec(A, x, n_threads=2), matvec(A, X, n_threads=2))
    finally:
        _core._set_isa("auto")
    for y, Y in got.values():
        np.testing.assert_allclose(y, A @ x, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(Y, A @ X, rtol=1e-12, atol=1e-12)


def test_unsorted_duplicates_each_variant(isa, rng):
    A = messy_csr(rng, 60, 37, 1500)
    x = rng.standard_normal(37)
    X = rng.standard_normal((37, 33))
    np.testing.assert_allclose(matvec(A, x), A @ x, atol=1e-12)
    np.testing.assert_allclose(matvec(A, X), A @ X, atol=1e-12)


def long_row_with(value, position, index_dtype, n_cols=50, length=40):
    """One row of `length` entries (so the wide loops see it, not only the tail) with one bad
    index."""
    indices = np.arange(length, dtype=np.int64) % n_cols
    indices[position] = value
    indptr = np.array([0, 0, length, length], dtype=index_dtype)
    A = sp.csr_array((np.ones(length), np.arange(length), indptr), shape=(3, n_cols))
    A.indices = indices.astype(index_dtype)
    A.indptr = indptr
    return A


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("position", [0, 7, 15, 16, 31, 39])
@pytest.mark.parametrize("bad", [-1, 50, 2**31 - 1, -(2**31)])
def test_bad_index_each_variant(isa, index_dtype, position, bad):
    A = long_row_with(bad, position, index_dtype)
    msg = rf"column index {bad} in row 1 is out of range, expected 0 <= index < 50"
    with pytest.raises(IndexError, match=msg):
        matvec(A, np.ones(50))
    with pytest.raises(IndexError, match=msg):
        matvec(A, np.ones((50, 33)))


def test_int64_index_beyond_int32_each_variant(isa):
    A = long_row_with(2**40, 20, np.int64)
    with pytest.raises(IndexError, match=r"column index 1099511627776 in row 1"):
        matvec(A, np.ones(50))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_bad_indptr_each_variant(isa, index_dtype):
    A = long_row_with(3, 0, index_dtype)
    A.indptr = np.array([0, 30, 20, 40], dtype=index_dtype)
    with pytest.raises(ValueError, match=r"malformed indptr at row 1"):
        matvec(A, np.ones(50))
    with pytest.raises(ValueError, match=r"malformed indptr at row 1"):
        matvec(A, np.ones((50, 4)))


def test_unknown_or_unsupported_variant_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown instruction set 'sse9'"):
        _core._set_isa("sse9")
    for name in ALL_ISAS:
        if name not in _core._isa_supported():
            with pytest.raises(ValueError, match="not supported by this CPU"):
                _core._set_isa(name)
    assert _core._isa() == _core._isa_best()


def run_with_env(value):
    code = "from sparsecoded import kernels; print(kernels.simd_variant())"
    env = dict(os.environ, SPARSECODED_ISA=value)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_environment_variable_forces_a_variant():
    out = run_with_env("generic")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "generic"
    bad = run_with_env("avx9000")
    assert bad.returncode != 0
    assert "SPARSECODED_ISA='avx9000'" in bad.stderr
    assert "unknown instruction set" in bad.stderr
