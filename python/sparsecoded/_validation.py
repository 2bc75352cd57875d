"""Input checks shared by every public kernel wrapper.

Only cheap checks happen here on the default path (CSR input): shapes,
dtypes, formats and the O(1) parts of the CSR contract (indptr length, first
and last entry). The O(nnz) parts (indptr nondecreasing, column indices in
range) are checked by the C++ kernels: ``matvec`` and ``matmat``'s ``A``
inside their own loops, before any access, with no extra pass over the data;
``encode_row_blocks``'s ``A``, every operand of ``lincomb`` and ``matmat``'s
sparse ``B`` in one separate parallel check pass (``csr_check``) before the
size pass, because those kernels need each row's sortedness (or reuse B's
rows many times) before they start.

Two cases do pay an O(nnz) pass here, on purpose:

* non-CSR sparse input (csc, coo, bsr, ...) is checked before scipy converts
  it, since scipy's conversion routines trust the structure and corrupt
  memory on malformed input; the conversion is a full pass anyway;
* uint64 index arrays are checked to fit int64 before the cast.

Messages say what was expected and what was found.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

__all__ = [
    "CSR",
    "MAX_THREADS",
    "as_csr",
    "as_dense",
    "check_csr_structure",
    "check_n_threads",
    "check_encoding_matrix",
    "value_dtype",
]


class CSR(NamedTuple):
    """A CSR matrix as the kernels take it: C-contiguous arrays of exact dtypes."""

    shape: tuple[int, int]
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])


#: the largest ``n_threads`` a kernel accepts
MAX_THREADS = 4096

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_FLOATS = (_F32, _F64)


def value_dtype(*dtypes: np.dtype, name: str = "input") -> np.dtype:
    """The kernel value type for operands of the given dtypes.

    float32 stays float32, float64 stays float64, bool and integers become
    float64 (as scipy promotes them against a float64 operand); the result
    follows numpy promotion across operands. Complex and other dtypes raise.
    """
    # fast path for the common call (every operand already float32/float64):
    # this runs several times per kernel call, and small products are
    # dominated by such fixed costs
    if all(dt in _FLOATS for dt in dtypes):
        if not dtypes:
            return _F64
        return _F32 if all(dt == _F32 for dt in dtypes) else _F64
    kinds: list[np.dtype[Any]] = []
    for dt in dtypes:
        dt = np.dtype(dt)
        if dt.kind == "c":
            raise ValueError(
                f"{name} has complex dtype {dt}; expected a real dtype (float32 or float64)"
            )
        if dt.kind in "biu":
            kinds.append(np.dtype(np.float64))
        elif dt.kind == "f" and dt.itemsize <= 8:
            kinds.append(np.dtype(np.float32) if dt.itemsize <= 4 else np.dtype(np.float64))
        else:
            raise ValueError(
                f"{name} has unsupported dtype {dt}; expected float32, float64, integer or bool"
            )
    return np.result_type(*kinds) if kinds else np.dtype(np.float64)


def _index_dtype(indptr: np.ndarray, indices: np.ndarray, name: str) -> np.dtype:
    """int32 or int64, never narrower than what came in."""
    for arr, what in ((indptr, "indptr"), (indices, "indices")):
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{name}.{what} has dtype {arr.dtype}, expected an integer dtype")
    widest = max(indptr.dtype.itemsize, indices.dtype.itemsize)
    unsigned32 = "u" in (indptr.dtype.kind, indices.dtype.kind) and widest >= 4
    return np.dtype(np.int64) if widest > 4 or unsigned32 else np.dtype(np.int32)


_I64_MAX = np.iinfo(np.int64).max


def _check_int_array(arr, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, found shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} has dtype {arr.dtype}, expected an integer dtype")
    return arr


def _check_range(arr: np.ndarray, limit: int, what: str, where: str) -> None:
    """Every entry of arr in [0, limit), else IndexError naming the first bad one."""
    if arr.shape[0] == 0:
        return
    if arr.min() < 0 or arr.max() >= limit:
        pos = int(np.flatnonzero((arr < 0) | (arr >= limit))[0])
        raise IndexError(
            f"{what} {arr[pos]} at {where}[{pos}] is out of range, expected 0 <= index < {limit}"
        )


def _check_compressed(A, name: str, n_major: int, n_minor: int, major: str, minor: str) -> None:
    """indptr/indices of a compressed format (csc, bsr) before scipy reads them."""
    fmt = A.format
    indptr = _check_int_array(A.indptr, f"{name}.indptr ({fmt})")
    indices = _check_int_array(A.indices, f"{name}.indices ({fmt})")
    nnz = indices.shape[0]
    if np.shape(A.data)[:1] != (nnz,):
        raise ValueError(
            f"{name}.indices and {name}.data ({fmt}) must be of equal length, found "
            f"{nnz} and {np.shape(A.data)[:1]}"
        )
    if indptr.shape[0] != n_major + 1:
        raise ValueError(
            f"{name}.indptr ({fmt}) has length {indptr.shape[0]}, "
            f"expected the number of {major}s + 1 = {n_major + 1}"
        )
    if indptr[0] != 0:
        raise ValueError(f"{name}.indptr[0] ({fmt}) is {indptr[0]}, expected 0")
    if indptr[-1] != nnz:
        raise ValueError(
            f"{name}.indptr[-1] ({fmt}) is {indptr[-1]}, expected nnz = len({name}.indices) = {nnz}"
        )
    if n_major > 0:
        dec = indptr[:-1] > indptr[1:]
        if dec.any():
            i = int(np.flatnonzero(dec)[0])
            raise ValueError(
                f"{name}.indptr ({fmt}) decreases at {major} {i}: indptr[{i}] = {indptr[i]} > "
                f"indptr[{i + 1}] = {indptr[i + 1]}, expected nondecreasing"
            )
    _check_range(indices, n_minor, f"{name} ({fmt}): {minor} index", f"{name}.indices")


def _check_before_tocsr(A, name: str) -> None:
    """The structure of a non-CSR sparse matrix, checked before scipy converts it.

    scipy's csc/coo/bsr -> csr routines index with the stored values
    unchecked, so a malformed input would corrupt memory instead of raising.
    """
    n_rows, n_cols = (int(s) for s in A.shape)
    fmt = A.format
    if fmt == "csc":
        _check_compressed(A, name, n_cols, n_rows, "column", "row")
    elif fmt == "bsr":
        R, C = A.blocksize
        if np.ndim(A.data) != 3 or tuple(np.shape(A.data)[1:]) != (R, C):
            raise ValueError(
                f"{name}.data (bsr) has shape {np.shape(A.data)}, expected (nnz_blocks, {R}, {C})"
            )
        if R < 1 or C < 1 or n_rows % R or n_cols % C:
            raise ValueError(
                f"{name} (bsr) has blocksize {(R, C)}, expected it to divide shape {A.shape}"
            )
        _check_compressed(A, name, n_rows // R, n_cols // C, "block row", "block column")
    elif fmt == "coo":
        row = _check_int_array(A.row, f"{name}.row (coo)")
        col = _check_int_array(A.col, f"{name}.col (coo)")
        data = np.asarray(A.data)
        if not (row.shape[0] == col.shape[0] == data.shape[0]) or data.ndim != 1:
            raise ValueError(
                f"{name}.row, {name}.col and {name}.data (coo) must be 1-D of equal length, "
                f"found shapes {row.shape}, {col.shape} and {data.shape}"
            )
        _check_range(row, n_rows, f"{name} (coo): row index", f"{name}.row")
        _check_range(col, n_cols, f"{name} (coo): column index", f"{name}.col")


def _fit_int64(arr: np.ndarray, what: str) -> None:
    """uint64 values above int64 max would wrap to negatives in the cast."""
    if arr.dtype == np.uint64 and arr.shape[0] and arr.max() > _I64_MAX:
        pos = int(np.argmax(arr > _I64_MAX))
        raise ValueError(f"{what}[{pos}] is {arr[pos]}, expected at most int64 max = {_I64_MAX}")


def as_csr(A, name: str = "A", *, dtype: np.dtype | None = None) -> CSR:
    """Any scipy sparse matrix/array or 2-D numpy array as a `CSR` tuple.

    Other sparse formats and dense arrays are converted once, on purpose.
    Index arrays keep their width (int64 stays int64). With `dtype`, the
    values are cast to it; otherwise float32/float64 are kept and integers
    or bools become float64.
    """
    if sp.issparse(A):
        if A.ndim != 2:
            raise ValueError(f"{name} must be 2-D, found {A.ndim}-D")
        if A.format != "csr":
            _check_before_tocsr(A, name)
            A = A.tocsr()
    elif isinstance(A, np.ndarray) or hasattr(A, "__array__"):
        arr = np.asarray(A)
        if arr.ndim != 2:
            raise ValueError(
                f"{name} must be a 2-D matrix, found {arr.ndim}-D with shape {arr.shape}"
            )
        value_dtype(arr.dtype, name=name)
        A = sp.csr_array(arr)
    else:
        raise ValueError(
            f"{name} must be a scipy sparse matrix/array or a numpy array, found {type(A).__name__}"
        )
    n_rows, n_cols = (int(s) for s in A.shape)
    V = np.dtype(dtype) if dtype is not None else value_dtype(A.dtype, name=name)
    indptr = np.asarray(A.indptr)
    indices = np.asarray(A.indices)
    data = np.asarray(A.data)
    if indptr.ndim != 1 or indptr.shape[0] != n_rows + 1:
        raise ValueError(
            f"{name}.indptr has shape {indptr.shape}, "
            f"expected length {name}.shape[0] + 1 = {n_rows + 1}"
        )
    if indices.ndim != 1 or data.ndim != 1 or indices.shape[0] != data.shape[0]:
        raise ValueError(
            f"{name}.indices and {name}.data must be 1-D of equal length, found shapes "
            f"{indices.shape} and {data.shape}"
        )
    I = _index_dtype(indptr, indices, name)  # noqa: E741
    _fit_int64(indptr, f"{name}.indptr")
    _fit_int64(indices, f"{name}.indices")
    indptr = np.ascontiguousarray(indptr, dtype=I)
    indices = np.ascontiguousarray(indices, dtype=I)
    data = np.ascontiguousarray(data, dtype=V)
    if indptr[0] != 0:
        raise ValueError(f"{name}.indptr[0] is {indptr[0]}, expected 0")
    if indptr[-1] != indices.shape[0]:
        raise ValueError(
            f"{name}.indptr[-1] is {indptr[-1]}, "
            f"expected nnz = len({name}.indices) = {indices.shape[0]}"
        )
    return CSR((n_rows, n_cols), indptr, indices, data)


def check_csr_structure(a: CSR, name: str = "A") -> CSR:
    """The O(nnz) part of the CSR contract, in numpy: indptr nondecreasing, indices in range.

    For payloads checked once and then used for many kernel calls (a pool's
    placed blocks); :func:`as_csr` has already checked the O(1) part.
    """
    n_rows, n_cols = a.shape
    indptr = a.indptr
    if n_rows > 0:
        dec = indptr[:-1] > indptr[1:]
        if dec.any():
            i = int(np.flatnonzero(dec)[0])
            raise ValueError(
                f"{name}.indptr decreases at row {i}: indptr[{i}] = {indptr[i]} > "
                f"indptr[{i + 1}] = {indptr[i + 1]}, expected nondecreasing"
            )
    _check_range(a.indices, n_cols, f"{name}: column index", f"{name}.indices")
    return a


def as_dense(x, name: str, dtype: np.dtype) -> np.ndarray:
    """A dense vector or matrix as a C-ordered array of `dtype` (F order is copied once)."""
    if sp.issparse(x):
        raise ValueError(
            f"{name} must be a dense numpy array here, found a scipy sparse {x.format} matrix"
        )
    arr = np.asarray(x)
    value_dtype(arr.dtype, name=name)
    return np.ascontiguousarray(arr, dtype=dtype)


def check_n_threads(n_threads) -> int:
    """0 for "all cores" (None), else a positive thread count."""
    if n_threads is None:
        return 0
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)):
        raise ValueError(f"n_threads must be None or a positive int, found {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be None or >= 1, found {n_threads}")
    if n_threads > MAX_THREADS:
        raise ValueError(f"n_threads must be None or <= {MAX_THREADS}, found {n_threads}")
    return int(n_threads)


def check_encoding_matrix(E, k_hint: str = "E", *, dtype: np.dtype) -> np.ndarray:
    """E (n x k, numpy or scipy sparse) as a dense C-ordered finite array of `dtype`."""
    if sp.issparse(E):
        if E.ndim != 2:
            raise ValueError(f"{k_hint} must be 2-D (n x k), found {E.ndim}-D")
        value_dtype(E.dtype, name=k_hint)
        E = E.toarray()
    E = np.asarray(E)
    if E.ndim != 2:
        raise ValueError(f"{k_hint} must be 2-D (n x k), found {E.ndim}-D with shape {E.shape}")
    value_dtype(E.dtype, name=k_hint)
    if E.shape[1] < 1:
        raise ValueError(f"{k_hint} must have k >= 1 columns, found shape {E.shape}")
    if E.dtype.kind == "f" and not np.all(np.isfinite(E)):
        bad = np.argwhere(~np.isfinite(E))[0]
        raise ValueError(
            f"{k_hint} must be finite, found {E[tuple(bad)]} at {k_hint}[{bad[0]}, {bad[1]}]"
        )
    with np.errstate(over="ignore"):  # reported just below, with a message
        out = np.ascontiguousarray(E, dtype=dtype)
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"{k_hint} overflows {np.dtype(dtype)}: expected finite values after the cast"
        )
    return out
