"""Non-CSR sparse inputs: well-formed ones match scipy, malformed ones raise before conversion.

scipy's csc/coo/bsr -> csr conversions trust the stored structure, so a
malformed input used to corrupt memory ("double free or corruption",
segfault) inside ``A.tocsr()``. The wrappers now check the structure first.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from kernel_cases import dense

from sparsecoded.kernels import encode_row_blocks, lincomb, matmat, matvec


def _dense_A():
    return np.array([[1.0, 0, 2], [0, 0, 3], [4, 5, 0], [0, 6, 0], [0, 0, 0], [7, 0, 8]])


FORMATS = ["csc", "coo", "bsr", "dia", "lil", "dok"]
CONSTRUCTORS = [
    sp.csc_array,
    sp.csc_matrix,
    sp.coo_array,
    sp.coo_matrix,
    sp.csr_matrix,
    sp.bsr_array,
    sp.dia_array,
    sp.lil_array,
    sp.dok_array,
]


@pytest.mark.parametrize("make", CONSTRUCTORS, ids=lambda f: f.__name__)
def test_well_formed_formats_match_scipy(make):
    D = _dense_A()
    A = make(D)
    x = np.arange(1.0, 4.0)
    np.testing.assert_allclose(matvec(A, x), D @ x)
    B = make(D.T)
    np.testing.assert_allclose(dense(matmat(A, B)), D @ D.T)
    np.testing.assert_allclose(dense(lincomb([A, A], [2.0, -0.5])), 1.5 * D)
    np.testing.assert_allclose(dense(lincomb([A, D], [2.0, 1.0])), 3 * D)
    blocks = encode_row_blocks(A, np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(blocks[0].toarray(), D[:3] + D[3:])


def _bad_csc(indptr, indices, index_dtype=np.int32):
    A = sp.csc_array((3, 3))
    A.indptr = np.asarray(indptr, index_dtype)
    A.indices = np.asarray(indices, index_dtype)
    A.data = np.ones(len(indices))
    return A


def _calls(A):
    yield lambda: matvec(A, np.ones(3))
    yield lambda: matmat(A, sp.csr_array(np.eye(3)))
    yield lambda: matmat(sp.csr_array(np.eye(3)), A)
    yield lambda: matmat(A, np.ones((3, 2)))
    yield lambda: lincomb([A, A], [1.0, 2.0])
    yield lambda: lincomb([A, np.ones((3, 3))], [1.0, 2.0])
    yield lambda: encode_row_blocks(A, np.ones((2, 2)))


@pytest.mark.parametrize("csc_matrix", [False, True])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_csc_row_index_out_of_range(csc_matrix, index_dtype):
    A = _bad_csc([0, 1, 2, 3], [0, 3, 1], index_dtype)
    if csc_matrix:
        A = sp.csc_matrix(A.shape)
        A.indptr = np.array([0, 1, 2, 3], index_dtype)
        A.indices = np.array([0, 3, 1], index_dtype)
        A.data = np.ones(3)
    for call in _calls(A):
        with pytest.raises(
            IndexError,
            match=r"\(csc\): row index 3 at [A-Za-z\[\]0-9]+\.indices\[1\] is out of range, "
            r"expected 0 <= index < 3",
        ):
            call()


def test_csc_negative_row_index():
    with pytest.raises(IndexError, match=r"row index -1 at A.indices\[2\] is out of range"):
        matvec(_bad_csc([0, 1, 2, 3], [0, 1, -1]), np.ones(3))


def test_csc_malformed_indptr():
    with pytest.raises(
        ValueError,
        match=r"A.indptr \(csc\) decreases at column 1: indptr\[1\] = 2 > indptr\[2\] = 1",
    ):
        matvec(_bad_csc([0, 2, 1, 3], [0, 1, 2]), np.ones(3))
    with pytest.raises(ValueError, match=r"A.indptr\[-1\] \(csc\) is 2, expected nnz = .* = 3"):
        matvec(_bad_csc([0, 1, 2, 2], [0, 1, 2]), np.ones(3))
    with pytest.raises(ValueError, match=r"A.indptr\[0\] \(csc\) is 1, expected 0"):
        matvec(_bad_csc([1, 1, 2, 3], [0, 1, 2]), np.ones(3))
    with pytest.raises(
        ValueError,
        match=r"A.indptr \(csc\) has length 3, expected the number of columns \+ 1 = 4",
    ):
        matvec(_bad_csc([0, 1, 3], [0, 1, 2]), np.ones(3))
    with pytest.raises(
        ValueError, match=r"decreases at column 1: indptr\[1\] = 3000000 > indptr\[2\] = 3"
    ):
        matvec(_bad_csc([0, 3_000_000, 3, 3], [0, 1, 2]), np.ones(3))


@pytest.mark.parametrize("make", [sp.coo_array, sp.coo_matrix], ids=lambda f: f.__name__)
@pytest.mark.parametrize("which", ["row", "col"])
@pytest.mark.parametrize("bad", [7, 3, -1])
def test_coo_index_out_of_range(make, which, bad):
    C = make(([1.0, 2.0], ([0, 1], [0, 1])), shape=(3, 3))
    getattr(C, which)[1] = bad
    what = "row" if which == "row" else "column"
    for call in _calls(C):
        with pytest.raises(
            IndexError,
            match=rf"\(coo\): {what} index {bad} at [A-Za-z\[\]0-9]+\.{which}\[1\] "
            r"is out of range, expected 0 <= index < 3",
        ):
            call()


def test_coo_length_mismatch():
    C = sp.coo_array(([1.0, 2.0], ([0, 1], [0, 1])), shape=(3, 3))
    C.data = np.ones(3)
    with pytest.raises(
        ValueError, match=r"A.row, A.col and A.data \(coo\) must be 1-D of equal length"
    ):
        matvec(C, np.ones(3))


def test_bsr_index_out_of_range():
    A = sp.bsr_array(np.ones((4, 4)), blocksize=(2, 2))
    A.indices = A.indices.copy()
    A.indices[1] = 5
    with pytest.raises(IndexError, match=r"\(bsr\): block column index 5 at A.indices\[1\]"):
        matvec(A, np.ones(4))


# ---- lincomb(drop_rounding=...): entries zero to within their own rounding ----------


def test_lincomb_drop_rounding_removes_cancellations_keeps_small_real_entries():
    a = sp.csr_array(np.array([[1.0, 1e-30, 0.3, 0.0], [2.0, 0.0, 0.0, 5.0]]))
    b = sp.csr_array(np.array([[1.0, 0.0, 0.1 + 0.2, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    b.data[:] = [1.0, 0.1 + 0.2]
    kept = lincomb([a, b], [1.0, -1.0])
    assert kept.nnz == 5  # the union of the structures, cancellations included
    C = lincomb([a, b], [1.0, -1.0], drop_rounding=4)
    C.sum_duplicates()
    # (0, 0) cancels exactly, (0, 2) = 0.3 - (0.1 + 0.2) is a rounding leftover (5.5e-17):
    # both go; 1e-30 is tiny but its only term is as tiny, so it stays
    np.testing.assert_array_equal(C.toarray(), [[0, 1e-30, 0, 0], [2.0, 0, 0, 5.0]])
    assert C.nnz == 3


def test_lincomb_drop_rounding_zero_drops_exact_zeros_only():
    a = sp.csr_array(np.array([[1.0, 0.3]]))
    b = sp.csr_array(np.array([[1.0, 0.1 + 0.2]]))
    C = lincomb([a, b], [1.0, -1.0], drop_rounding=0)
    assert C.nnz == 1
    assert C.toarray()[0, 1] == 0.3 - (0.1 + 0.2)


def test_lincomb_drop_rounding_keeps_nan_and_inf():
    a = sp.csr_array(np.array([[np.inf, np.nan, 1.0]]))
    b = sp.csr_array(np.array([[np.inf, 1.0, 1.0]]))
    C = lincomb([a, b], [1.0, 1.0], drop_rounding=4).toarray()
    assert np.isinf(C[0, 0])
    assert np.isnan(C[0, 1])
    assert C[0, 2] == 2.0


def test_lincomb_term_errors_widen_the_bound(rng):
    a = sp.csr_array(np.array([[1.0, 1e-9]]))
    b = sp.csr_array(np.array([[1.0, 0.0]]))
    b.data[:] = [1.0]
    plain = lincomb([a, b], [1.0, -1.0], drop_rounding=4)
    assert plain.nnz == 1  # 1e-9 stays: nothing says it could be rounding
    big = [(np.array([1e8]), np.array([1.0, 1.0])), (np.zeros(1), np.zeros(2))]
    C = lincomb([a, b], [1.0, -1.0], drop_rounding=4, term_errors=big)
    assert C.nnz == 0  # 1e-9 <= 4 eps * 1e8: within the operand's own error


def test_lincomb_drop_matches_scipy_on_random_cancellations(rng):
    A = sp.random_array((200, 150), density=0.05, format="csr", rng=rng)
    B = sp.random_array((200, 150), density=0.05, format="csr", rng=rng)
    S = A + B
    C = lincomb([S, A, B], [1.0, -1.0, -1.0], drop_rounding=4)
    assert C.nnz == 0
    D = lincomb([S, A], [1.0, -1.0], drop_rounding=4)
    np.testing.assert_allclose(D.toarray(), B.toarray(), rtol=0, atol=1e-15)
    assert D.nnz == B.nnz


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"drop_rounding": -1.0}, "drop_rounding must be finite and >= 0"),
        ({"drop_rounding": np.nan}, "drop_rounding must be finite and >= 0"),
        ({"drop_rounding": "4"}, "drop_rounding must be a number or None"),
        ({"term_errors": [None, None]}, "term_errors is only used with drop_rounding"),
        ({"drop_rounding": 4, "term_errors": [None]}, "term_errors has 1 entries, expected"),
        ({"drop_rounding": 4, "term_errors": [None, None]}, r"term_errors\[0\] must be a"),
        (
            {"drop_rounding": 4, "term_errors": [(np.ones(3), np.ones(2))] * 2},
            r"term_errors\[0\] row has shape \(3,\), expected \(2,\)",
        ),
        (
            {"drop_rounding": 4, "term_errors": [(np.ones(2), -np.ones(2))] * 2},
            r"term_errors\[0\] col must be finite and >= 0",
        ),
    ],
)
def test_lincomb_drop_bad_arguments(kwargs, msg):
    a = sp.csr_array(np.eye(2))
    with pytest.raises(ValueError, match=msg):
        lincomb([a, a], [1.0, 1.0], **kwargs)
