"""Every error path of the kernel wrappers: the right exception and an expected-vs-found message.

Malformed CSR structures are built by hand (scipy checks only lengths, not
contents, and attributes can be reassigned), so these also prove the kernels
never read out of bounds: under the ASan build they would abort instead.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparsecoded.kernels import encode_row_blocks, lincomb, matmat, matvec


def good(index_dtype=np.int32):
    A = sp.csr_array(np.array([[1.0, 0, 2], [0, 0, 3], [4, 5, 0], [0, 6, 0]]))
    A.indices = A.indices.astype(index_dtype)
    A.indptr = A.indptr.astype(index_dtype)
    return A


def hacked(indptr=None, indices=None, shape=(4, 3), index_dtype=np.int32):
    A = good(index_dtype)
    if indptr is not None:
        A.indptr = np.asarray(indptr, dtype=index_dtype)
    if indices is not None:
        A.indices = np.asarray(indices, dtype=index_dtype)
    A._shape = shape
    return A


def all_kernels(A):
    """One call per kernel that reads A's structure."""
    x = np.ones(A.shape[1])
    yield lambda: matvec(A, x)
    yield lambda: matvec(A, np.ones((A.shape[1], 5)))
    yield lambda: matmat(A, sp.csr_array(np.eye(A.shape[1])))
    yield lambda: matmat(A, sp.csr_array(np.ones((A.shape[1], 3))))  # dense-output path
    yield lambda: matmat(sp.csr_array(np.eye(A.shape[0])), A)  # A as the right operand
    yield lambda: encode_row_blocks(A, np.ones((3, 2)))
    yield lambda: lincomb([A, A], [1.0, 2.0])


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("bad", [-1, 3, 1000, np.iinfo(np.int32).max])
def test_column_index_out_of_range(index_dtype, bad):
    indices = good().indices.copy()
    indices[3] = bad
    A = hacked(indices=indices, index_dtype=index_dtype)
    for call in all_kernels(A):
        with pytest.raises(
            IndexError,
            match=rf"column index {bad} in row \d+ is out of range, expected 0 <= index < 3",
        ):
            call()


def test_int64_index_beyond_int32():
    indices = good(np.int64).indices.copy()
    indices[0] = 2**40
    A = hacked(indices=indices, index_dtype=np.int64)
    with pytest.raises(IndexError, match="column index 1099511627776"):
        matvec(A, np.ones(3))


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_decreasing_indptr(index_dtype):
    A = hacked(indptr=[0, 3, 1, 5, 6], index_dtype=index_dtype)
    for call in all_kernels(A):
        with pytest.raises(
            ValueError,
            match=r"malformed indptr at row \d+, expected 0 <= indptr\[i\] <= indptr\[i\+1\]",
        ):
            call()


def test_indptr_past_nnz_in_the_middle():
    A = hacked(indptr=[0, 100, 2, 5, 6])
    for call in all_kernels(A):
        with pytest.raises(ValueError, match="malformed indptr at row 0"):
            call()


def test_negative_indptr():
    A = hacked(indptr=[0, -5, 3, 5, 6])
    with pytest.raises(ValueError, match="malformed indptr"):
        matvec(A, np.ones(3))


def test_indptr_wrong_length():
    A = hacked(indptr=[0, 2, 3, 5])
    with pytest.raises(
        ValueError, match=r"A.indptr has shape \(4,\), expected length A.shape\[0\] \+ 1 = 5"
    ):
        matvec(A, np.ones(3))


def test_indptr_ends_do_not_match_nnz():
    with pytest.raises(
        ValueError, match=r"A.indptr\[-1\] is 5, expected nnz = len\(A.indices\) = 6"
    ):
        matvec(hacked(indptr=[0, 2, 3, 5, 5]), np.ones(3))
    with pytest.raises(ValueError, match=r"A.indptr\[0\] is 1, expected 0"):
        matvec(hacked(indptr=[1, 2, 3, 5, 6]), np.ones(3))


def test_indices_data_length_mismatch():
    A = good()
    A.data = A.data[:-1]
    with pytest.raises(
        ValueError,
        match=r"A.indices and A.data must be 1-D of equal length, found shapes \(6,\) and \(5,\)",
    ):
        matvec(A, np.ones(3))


def test_float_indices_rejected():
    A = good()
    A.indices = A.indices.astype(np.float64)
    with pytest.raises(ValueError, match="A.indices has dtype float64, expected an integer dtype"):
        matvec(A, np.ones(3))


def test_matvec_shape_mismatch():
    with pytest.raises(ValueError, match=r"x has length 5, expected A.shape\[1\] = 3"):
        matvec(good(), np.ones(5))
    with pytest.raises(ValueError, match=r"x has shape\[0\] 4, expected A.shape\[1\] = 3"):
        matvec(good(), np.ones((4, 2)))
    with pytest.raises(ValueError, match="x must be 1-D or 2-D, found 3-D"):
        matvec(good(), np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match="x must be 1-D or 2-D, found 0-D"):
        matvec(good(), np.float64(1.0))


def test_matvec_sparse_x_rejected():
    with pytest.raises(ValueError, match="x must be a dense numpy array, found a scipy sparse csr"):
        matvec(good(), sp.csr_array(np.ones((3, 1))))


def test_matmat_shape_mismatch():
    with pytest.raises(ValueError, match=r"B has B.shape\[0\] = 4 rows, expected A.shape\[1\] = 3"):
        matmat(good(), sp.csr_array(np.ones((4, 2))))
    # a dense B goes through matvec's kernel, but the message names B
    with pytest.raises(ValueError, match=r"B has shape\[0\] 4, expected A.shape\[1\] = 3"):
        matmat(good(), np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"B has length 5, expected A.shape\[1\] = 3"):
        matmat(good(), np.ones(5))
    with pytest.raises(ValueError, match="B must be 1-D or 2-D, found 3-D"):
        matmat(good(), np.ones((3, 2, 2)))


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_complex_rejected(dtype):
    Ac = sp.csr_array(np.eye(3, dtype=dtype))
    with pytest.raises(
        ValueError, match=f"A has complex dtype {np.dtype(dtype)}; expected a real dtype"
    ):
        matvec(Ac, np.ones(3))
    with pytest.raises(ValueError, match="x has complex dtype"):
        matvec(good(), np.ones(3, dtype=dtype))
    with pytest.raises(ValueError, match="A has complex dtype"):
        encode_row_blocks(Ac, np.ones((2, 2)))
    with pytest.raises(ValueError, match="E has complex dtype"):
        encode_row_blocks(good(), np.ones((2, 2), dtype=dtype))
    with pytest.raises(ValueError, match="B has complex dtype"):
        matmat(good(), sp.csr_array(np.eye(3, dtype=dtype)))
    with pytest.raises(ValueError, match="mats.* has complex dtype"):
        lincomb([good(), sp.csr_array(np.ones((4, 3), dtype=dtype))], [1, 1])


def test_unsupported_dtypes():
    with pytest.raises(ValueError, match="x has unsupported dtype object"):
        matvec(good(), np.array([1, 2, 3], dtype=object))
    with pytest.raises(ValueError, match=r"A has unsupported dtype (float128|longdouble)"):
        matvec(sp.csr_array(np.eye(3, dtype=np.longdouble)), np.ones(3))


def test_encode_E_problems():
    A = good()
    with pytest.raises(ValueError, match=r"E must be 2-D \(n x k\), found 1-D with shape \(3,\)"):
        encode_row_blocks(A, np.ones(3))
    with pytest.raises(ValueError, match=r"E must be 2-D \(n x k\), found 3-D"):
        encode_row_blocks(A, np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match=r"E must have k >= 1 columns, found shape \(3, 0\)"):
        encode_row_blocks(A, np.ones((3, 0)))
    for bad in (np.nan, np.inf, -np.inf):
        E = np.ones((3, 2))
        E[1, 0] = bad
        with pytest.raises(ValueError, match=rf"E must be finite, found {bad} at E\[1, 0\]"):
            encode_row_blocks(A, E)
        with pytest.raises(ValueError, match="E must be finite"):
            encode_row_blocks(A, sp.csr_array(E))


def test_encode_E_overflows_float32():
    A = sp.csr_array(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="E overflows float32"):
        encode_row_blocks(A, np.full((2, 2), 1e300))


def test_lincomb_problems():
    A = good()
    with pytest.raises(
        ValueError, match=r"coeffs has shape \(3,\), expected \(2,\) = \(len\(mats\),\)"
    ):
        lincomb([A, A], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="mats is empty"):
        lincomb([], [])
    with pytest.raises(
        ValueError, match=r"mats\[1\] has shape \(3, 4\), expected mats\[0\].shape = \(4, 3\)"
    ):
        lincomb([A, sp.csr_array((3, 4))], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"coeffs must be finite, found nan at coeffs\[1\]"):
        lincomb([A, A], [1.0, np.nan])
    with pytest.raises(ValueError, match=r"coeffs must be finite, found -inf at coeffs\[0\]"):
        lincomb([A, A.toarray()], [-np.inf, 1.0])
    with pytest.raises(ValueError, match="mats must be a list of matrices, found a single array"):
        lincomb(np.ones((2, 3, 3)), [1.0, 2.0])


def test_not_a_matrix():
    with pytest.raises(ValueError, match=r"A must be a 2-D matrix, found 1-D with shape \(3,\)"):
        matvec(np.ones(3), np.ones(3))
    with pytest.raises(
        ValueError, match="A must be a scipy sparse matrix/array or a numpy array, found str"
    ):
        matvec("abc", np.ones(3))


@pytest.mark.parametrize("n_threads", [0, -1, 1.5, "2", True, 4097, 2**40, 2**70])
def test_bad_n_threads(n_threads):
    with pytest.raises(ValueError, match="n_threads must be None or"):
        matvec(good(), np.ones(3), n_threads=n_threads)
    with pytest.raises(ValueError, match="n_threads must be None or"):
        encode_row_blocks(good(), np.ones((2, 2)), n_threads=n_threads)


def test_core_refuses_wrong_dtypes_and_sizes():
    """The bindings never convert silently and check sizes themselves."""
    from sparsecoded import _core

    A = good()
    y = np.empty(4)
    with pytest.raises(TypeError):
        _core.csr_matvec(4, 3, A.indptr, A.indices, A.data, np.ones(3, np.float32), y, 1)
    with pytest.raises(TypeError):
        _core.csr_matvec(4, 3, A.indptr, A.indices, A.data, np.ones(3), np.empty(4, np.float32), 1)
    with pytest.raises(ValueError, match="x has 2 entries, expected 3"):
        _core.csr_matvec(4, 3, A.indptr, A.indices, A.data, np.ones(2), y, 1)
    with pytest.raises(ValueError, match="indptr has 5 entries, expected 6"):
        _core.csr_matvec(5, 3, A.indptr, A.indices, A.data, np.ones(3), np.empty(5), 1)
    with pytest.raises(ValueError, match="need k >= 1 and b \\* k >= m"):
        _core.csr_encode(4, 3, A.indptr, A.indices, A.data, 2, 1, np.ones((2, 2)), 1)


@pytest.mark.parametrize("n_threads", [4097, 2**40])
def test_n_threads_above_cap_names_the_value(n_threads):
    with pytest.raises(ValueError, match=rf"n_threads must be None or <= 4096, found {n_threads}"):
        matvec(good(), np.ones(3), n_threads=n_threads)
    with pytest.raises(ValueError, match=rf"n_threads must be None or <= 4096, found {n_threads}"):
        matmat(good(), sp.csr_array(np.eye(3)), n_threads=n_threads)
    with pytest.raises(ValueError, match=rf"n_threads must be None or <= 4096, found {n_threads}"):
        lincomb([good()], [1.0], n_threads=n_threads)
    assert matvec(good(), np.ones(3), n_threads=4096).shape == (4,)


def test_uint64_index_above_int64_max():
    """Used to wrap in the cast to int64 and be reported as "column index -1"."""
    A = good()
    A.indices = A.indices.astype(np.uint64)
    A.indices[2] = np.uint64(2**64 - 1)
    for call in all_kernels(A):
        with pytest.raises(
            ValueError,
            match=r"(A|B|mats\[\d\])\.indices\[2\] is 18446744073709551615, "
            r"expected at most int64 max = 9223372036854775807",
        ):
            call()
    A = good()
    A.indptr = A.indptr.astype(np.uint64)
    A.indptr[1] = np.uint64(2**63)
    with pytest.raises(ValueError, match=r"A.indptr\[1\] is 9223372036854775808, expected at most"):
        matvec(A, np.ones(3))
    # in range uint64 still works (and a too-large one in range of int64 is a plain IndexError)
    A = good()
    A.indices = A.indices.astype(np.uint64)
    np.testing.assert_allclose(matvec(A, np.ones(3)), good().toarray().sum(axis=1))
    A.indices[2] = np.uint64(2**40)
    with pytest.raises(IndexError, match="column index 1099511627776 in row"):
        matvec(A, np.ones(3))


def _lincomb_mixed_calls(S):
    """lincomb calls with S among dense operands (the path that used S.tocoo() unchecked)."""
    D = np.ones(S.shape)
    yield lambda: lincomb([S, D], [1.0, 2.0])
    yield lambda: lincomb([D, S], [1.0, 2.0])
    yield lambda: lincomb([D, S, S], [1.0, 0.0, 3.0])


def test_lincomb_dense_operand_checks_sparse_ones():
    # indptr past nnz: heap corruption ("free(): invalid pointer") before the fix
    A = hacked(indptr=[0, 3_000_000, 3, 5, 6])
    for call in _lincomb_mixed_calls(A):
        with pytest.raises(ValueError, match=r"mats\[\d\]: malformed indptr at row 0"):
            call()
    # decreasing indptr: a silently wrong answer before the fix
    A = hacked(indptr=[0, 3, 1, 5, 6])
    for call in _lincomb_mixed_calls(A):
        with pytest.raises(ValueError, match=r"mats\[\d\]: malformed indptr at row 1"):
            call()
    indices = good().indices.copy()
    indices[3] = 7
    A = hacked(indices=indices)
    for call in _lincomb_mixed_calls(A):
        with pytest.raises(IndexError, match=r"mats\[\d\]: column index 7 in row \d+"):
            call()


def test_decreasing_indptr_names_both_values():
    A = hacked(indptr=[0, 3, 1, 5, 6])
    for call in all_kernels(A):
        with pytest.raises(
            ValueError,
            match=r"malformed indptr at row 1, expected 0 <= indptr\[i\] <= indptr\[i\+1\] <= "
            r"nnz = 6, found indptr\[i\] = 3, indptr\[i\+1\] = 1",
        ):
            call()
