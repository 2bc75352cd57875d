"""Native sparse kernels: encoding, products and linear combinations of CSR matrices.

Thin wrappers over the C++ core (``sparsecoded._core``). Every entry point
goes through :mod:`sparsecoded._validation` for the cheap checks; the C++
kernels check indptr and the column indices before any access (matvec and
matmat's ``A`` inside their own loops; encode, lincomb and matmat's sparse
``B`` in a separate check pass first), so malformed input raises
``ValueError`` / ``IndexError`` and never reads or writes out of bounds. An
allocation failure in a worker thread raises ``MemoryError``.

Inputs may be any scipy sparse matrix or array (other formats are checked,
then converted to CSR once) or numpy arrays. Index arrays keep their width: int64 stays
int64. Values are float32 or float64; integer and bool inputs become float64,
complex inputs are rejected.

``n_threads=None`` means all cores (see :func:`resolve_threads`).

Pools validate a payload once, when it is placed (:func:`_placed`: the cheap
checks above plus the O(nnz) structure scan), and then run it every round
through the private unchecked entries :func:`_matvec_placed` and
:func:`_matmat_placed`, which go straight to the C++ core.

The SpMV / SpMM row loops come in instruction-set variants chosen at run time
(``generic``, ``avx2``, ``avx512``; see :func:`simd_variant`). The environment
variable ``SPARSECODED_ISA`` forces one at import (``auto`` is the default).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from . import _core
from ._validation import (
    CSR,
    as_csr,
    as_dense,
    check_csr_structure,
    check_encoding_matrix,
    check_n_threads,
    value_dtype,
)

__all__ = [
    "DENSE_OUTPUT_DENSITY",
    "encode_row_blocks",
    "lincomb",
    "matmat",
    "matvec",
    "resolve_threads",
    "simd_variant",
]


def simd_variant() -> str:
    """The instruction-set variant the SpMV / SpMM kernels run: ``generic``, ``avx2`` or ``avx512``.

    Chosen at import from what the CPU supports, unless ``SPARSECODED_ISA``
    names one (an unknown name, or one this CPU cannot run, is a ValueError
    at import).
    """
    return _core._isa()


def _isa_from_environment() -> None:
    name = os.environ.get("SPARSECODED_ISA", "").strip().lower()
    if name:
        try:
            _core._set_isa(name)
        except ValueError as exc:
            raise ValueError(f"SPARSECODED_ISA={name!r}: {exc}") from None


_isa_from_environment()

#: ``matmat`` of two sparse operands returns a dense ndarray when the
#: estimated density of the product reaches this fraction (see ``matmat``).
DENSE_OUTPUT_DENSITY = 0.25


def resolve_threads(n_threads: int | None = None) -> int:
    """The number of threads a kernel call with this ``n_threads`` uses at most.

    Parameters
    ----------
    n_threads : int or None
        ``None`` means all cores (OpenMP's default team size).

    Returns
    -------
    int
        1 when the core was built without OpenMP.

    Examples
    --------
    >>> from sparsecoded.kernels import resolve_threads
    >>> resolve_threads(1)
    1
    """
    nt = check_n_threads(n_threads)
    if not _core.openmp_available():
        return 1
    return _core.default_threads() if nt == 0 else nt


def _csr_array(
    shape: tuple[int, int], indptr, indices, data, *, sorted_indices=True
) -> sp.csr_array:
    """A csr_array over these arrays, no copies and no index downcast.

    Every kernel output has distinct indices per row; with ``sorted_indices``
    they are also sorted, and scipy's canonical flag is set accordingly.
    """
    out = sp.csr_array(shape, dtype=data.dtype)
    out.indptr = indptr
    out.indices = indices
    out.data = data
    if sorted_indices:
        out.has_canonical_format = True
    else:
        out.has_canonical_format = False
        out.has_sorted_indices = False
    return out


def _with_dtypes(a: CSR, index_dtype: np.dtype, dtype: np.dtype) -> CSR:
    if a.indices.dtype == index_dtype and a.data.dtype == dtype:
        return a
    return CSR(
        a.shape,
        a.indptr.astype(index_dtype, copy=False),
        a.indices.astype(index_dtype, copy=False),
        a.data.astype(dtype, copy=False),
    )


def _common_index_dtype(*mats: CSR) -> np.dtype:
    return (
        np.dtype(np.int64) if any(m.indices.dtype == np.int64 for m in mats) else np.dtype(np.int32)
    )


def encode_row_blocks(A, E, *, n_threads: int | None = None) -> list[sp.csr_array]:
    """Coded row blocks ``sum_j E[i, j] * A_j`` of a sparse matrix.

    ``A`` (m x c) is cut by rows into ``k = E.shape[1]`` blocks of
    ``b = ceil(m / k)`` rows, the last one padded with empty rows. Coded block
    ``i`` mixes only the blocks with ``E[i, j] != 0`` (a merge of their sorted
    rows, two passes: size, then fill).

    Parameters
    ----------
    A : scipy sparse matrix/array or ndarray, shape (m, c)
    E : ndarray or scipy sparse, shape (n, k)
        The encoding matrix; finite values, cast to A's value dtype.
    n_threads : int or None
        Threads to use; None means all cores.

    Returns
    -------
    list of scipy.sparse.csr_array
        ``n`` blocks of shape (b, c) with sorted, distinct indices, A's index
        dtype (int64 if a block outgrows int32) and A's value dtype (float64
        for integer A). An all-zero row of E gives an empty block. The blocks
        are views into one buffer per call.

    Raises
    ------
    ValueError
        E not 2-D or not finite, complex or unsupported dtypes, malformed CSR.
    IndexError
        A column index of A out of range.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparsecoded.kernels import encode_row_blocks
    >>> A = sp.csr_array(np.arange(12.0).reshape(4, 3))
    >>> blocks = encode_row_blocks(A, np.array([[1.0, 0.0], [1.0, 1.0]]))
    >>> blocks[1].toarray()
    array([[ 6.,  8., 10.],
           [12., 14., 16.]])
    """
    nt = check_n_threads(n_threads)
    a = as_csr(A, "A")
    Ed = check_encoding_matrix(E, "E", dtype=a.data.dtype)
    n, k = Ed.shape
    m, c = a.shape
    b = -(-m // k)
    indptr, indices, data = _core.csr_encode(m, c, a.indptr, a.indices, a.data, k, b, Ed, nt)
    I = a.indices.dtype  # noqa: E741
    limit = np.iinfo(I).max
    blocks = []
    for i in range(n):
        ip = indptr[i * b : (i + 1) * b + 1]
        start, stop = int(ip[0]), int(ip[-1])
        idx = indices[start:stop]
        if stop - start <= limit:
            ip = (ip - start).astype(I, copy=False)
        else:  # a block larger than int32 can index: widen, never wrap
            ip = ip - start
            idx = idx.astype(np.int64)
        blocks.append(_csr_array((b, c), ip, idx, data[start:stop]))
    return blocks


def _placed(obj, name: str = "payload"):
    """A pool payload, fully checked once, in the form the unchecked entries take.

    A matrix (scipy sparse in any format, or a 2-D numpy array) becomes a
    `CSR` whose structure is scanned in full (indptr nondecreasing, indices in
    range); a pair ``(A, B)`` (the payload of ``"matmat"``) becomes
    ``(CSR, CSR)`` or, for a dense ``B``, ``(CSR, ndarray)`` with
    ``B.shape[0] == A.shape[1]`` checked.  Raises TypeError for anything else,
    ValueError / IndexError (naming ``name``) for a malformed matrix.
    """
    if sp.issparse(obj) or isinstance(obj, np.ndarray):
        if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
            raise TypeError(f"{name} is an object array, expected a numeric array")
        return check_csr_structure(as_csr(obj, name), name)
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and not isinstance(obj, CSR):
        a = _placed(obj[0], f"{name}[0]")
        B = obj[1]
        b: CSR | np.ndarray
        if sp.issparse(B):
            b = check_csr_structure(as_csr(B, f"{name}[1]"), f"{name}[1]")
        elif isinstance(B, np.ndarray) and not B.dtype.hasobject:
            if B.ndim not in (1, 2):
                raise ValueError(f"{name}[1] must be 1-D or 2-D, found {B.ndim}-D")
            b = as_dense(B, f"{name}[1]", value_dtype(B.dtype, name=f"{name}[1]"))
        else:
            raise TypeError(
                f"{name}[1] is a {type(B).__name__}, "
                "expected a scipy sparse matrix or a numpy array"
            )
        if b.shape[0] != a.shape[1]:
            raise ValueError(
                f"{name}[1] has {b.shape[0]} rows, expected {name}[0].shape[1] = {a.shape[1]}"
            )
        return (a, b)
    raise TypeError(
        f"{name} is a {type(obj).__name__}, expected a scipy sparse matrix, "
        "a numpy array or a pair (A_coded, B_coded) of them"
    )


def _matvec_placed(a: CSR, x: np.ndarray, n_threads: int) -> np.ndarray:
    """``a @ x`` with no Python-side checks: the pools' per-round entry.

    ``a`` comes from :func:`_placed`; ``x`` passed the pool's operand check
    (float32/float64, 1-D or 2-D, ``x.shape[0] == a.shape[1]``); ``n_threads``
    is an int >= 1.  The C++ kernel still checks indices inside its loop.
    """
    V = a.data.dtype if x.dtype == a.data.dtype else np.dtype(np.float64)
    if a.data.dtype != V:
        a = CSR(a.shape, a.indptr, a.indices, a.data.astype(V))
    if x.dtype != V or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=V)
    m, c = a.shape
    if x.ndim == 1:
        y = np.empty(m, dtype=V)
        _core.csr_matvec(m, c, a.indptr, a.indices, a.data, x, y, n_threads)
        return y
    Y = np.empty((m, x.shape[1]), dtype=V)
    _core.csr_matvecs(m, c, x.shape[1], a.indptr, a.indices, a.data, x, Y, n_threads)
    return Y


def _matmat_placed(pair: tuple, n_threads: int):
    """``A @ B`` of a pair from :func:`_placed`, with no Python-side checks."""
    a, b = pair
    if isinstance(b, np.ndarray):
        return _matvec_placed(a, b, n_threads)
    return _matmat_csr(a, b, n_threads)


def matvec(A, x, *, n_threads: int | None = None) -> np.ndarray:
    """``A @ x`` for sparse ``A`` and a dense vector or matrix ``x``.

    Parameters
    ----------
    A : scipy sparse matrix/array or ndarray, shape (m, c)
    x : ndarray, shape (c,) or (c, q)
        A Fortran-ordered matrix is copied to C order once.
    n_threads : int or None
        Threads to use; None means all cores.

    Returns
    -------
    ndarray
        Shape (m,) for a vector, (m, q) C-ordered for a matrix; the dtype
        follows numpy promotion of A's and x's value types (float32 or float64).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparsecoded.kernels import matvec
    >>> matvec(sp.csr_array(np.eye(2)), np.array([3.0, 4.0]))
    array([3., 4.])
    """
    return _matvec(A, x, check_n_threads(n_threads), "x")


def _matvec(A, x, nt: int, xname: str) -> np.ndarray:
    """matvec with the dense operand called ``xname`` in messages (``B`` from matmat)."""
    a = as_csr(A, "A")
    if sp.issparse(x):
        raise ValueError(
            f"x must be a dense numpy array, found a scipy sparse {x.format} matrix; use matmat"
        )
    xa = np.asarray(x)
    V = value_dtype(a.data.dtype, xa.dtype, name=xname)
    a = _with_dtypes(a, a.indices.dtype, V)
    m, c = a.shape
    if xa.ndim not in (1, 2):
        raise ValueError(f"{xname} must be 1-D or 2-D, found {xa.ndim}-D with shape {xa.shape}")
    if xa.shape[0] != c:
        what = "length" if xa.ndim == 1 else "shape[0]"
        raise ValueError(f"{xname} has {what} {xa.shape[0]}, expected A.shape[1] = {c}")
    X = as_dense(xa, xname, V)
    if X.ndim == 1:
        y = np.empty(m, dtype=V)
        _core.csr_matvec(m, c, a.indptr, a.indices, a.data, X, y, nt)
        return y
    q = X.shape[1]
    Y = np.empty((m, q), dtype=V)
    _core.csr_matvecs(m, c, q, a.indptr, a.indices, a.data, X, Y, nt)
    return Y


def estimated_density(A_shape, A_nnz: int, B_shape, B_nnz: int) -> float:
    """Expected fraction of nonzeros in ``A @ B`` if the nonzeros were uniform.

    Each output entry is a sum of ``n`` products, each nonzero with probability
    ``p_a * p_b``; so the entry is nonzero with probability about
    ``1 - exp(-n p_a p_b) = 1 - exp(-nnz(A) nnz(B) / (m n p))``.
    """
    m, n = A_shape
    p = B_shape[1]
    if m == 0 or n == 0 or p == 0:
        return 0.0
    lam = A_nnz * B_nnz / (m * n * p)
    return -math.expm1(-lam)


def product_nnz_upper_bound(a: CSR, b: CSR) -> int:
    """An upper bound on nnz(A @ B), exact for the structure: O(nnz(A) + n) with numpy.

    ``sum_i min(p, sum_{k in row i of A} nnz(B row k))``: row i of the
    product has at most as many entries as the B rows it gathers, and at
    most p. Malformed structure (caught later by the kernels) only makes the
    bound meaningless, never an out-of-bounds read: indices and indptr are
    clipped here.
    """
    m, n = a.shape
    p = b.shape[1]
    if m == 0 or n == 0 or p == 0 or a.nnz == 0:
        return 0
    b_row_nnz = np.diff(b.indptr.astype(np.int64))
    gathered = b_row_nnz[np.clip(a.indices, 0, n - 1)]
    cum = np.zeros(a.nnz + 1, dtype=np.int64)
    np.cumsum(gathered, out=cum[1:])
    ip = np.clip(a.indptr, 0, a.nnz)
    per_row = cum[ip[1:]] - cum[ip[:-1]]
    return int(np.minimum(per_row, p).sum())


def matmat(A, B, *, n_threads: int | None = None):
    """``A @ B`` for sparse ``A`` and sparse or dense ``B``.

    Sparse ``B``: Gustavson's row-by-row product. The product is written
    straight into a dense ndarray (no markers, no sort; a CSR of that density
    would not be smaller) when both the estimated density of the product
    (:func:`estimated_density`, from the shapes and nnz only, assuming
    uniformly spread nonzeros) and an exact upper bound on its nonzeros
    (:func:`product_nnz_upper_bound`, ``sum_i min(p, sum_{k in row i of A}
    nnz(B row k))``, one O(nnz(A)) numpy pass, computed only when the
    estimate says dense) reach :data:`DENSE_OUTPUT_DENSITY` of ``m * p``.
    The bound keeps structured inputs that fool the estimate (A nonzero
    only in column 0, B only in row 1: an all-zero product) sparse.
    Otherwise the product is built as CSR in two passes (size, then fill).
    Dense ``B``: the same kernel as :func:`matvec`.

    Parameters
    ----------
    A : scipy sparse matrix/array or ndarray, shape (m, n)
    B : scipy sparse matrix/array, shape (n, p), or ndarray, shape (n,) or (n, p)
    n_threads : int or None
        Threads to use; None means all cores.

    Returns
    -------
    scipy.sparse.csr_array or ndarray
        CSR with distinct but unsorted indices in each row (like scipy's own
        product; sorting every row would cost more than the product: call
        ``.sort_indices()`` if needed), or a dense C-ordered ndarray (see above).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparsecoded.kernels import matmat
    >>> C = matmat(sp.csr_array(np.eye(3)), sp.csr_array(np.eye(3)))
    >>> np.asarray(C.toarray() if sp.issparse(C) else C).trace()
    np.float64(3.0)
    """
    nt = check_n_threads(n_threads)
    if not sp.issparse(B):
        return _matvec(A, B, nt, "B")
    a = as_csr(A, "A")
    b = as_csr(B, "B")
    if b.shape[0] != a.shape[1]:
        raise ValueError(
            f"B has B.shape[0] = {b.shape[0]} rows, expected A.shape[1] = {a.shape[1]}"
        )
    return _matmat_csr(a, b, nt)


#: B wider than this, and wider than 4 x nnz(B) columns, is multiplied on the
#: columns it uses: the kernel's per-thread column markers scale with the width
COMPACT_COLUMNS = 1 << 20


def _matmat_csr(a: CSR, b: CSR, nt: int):
    """The sparse x sparse product of two checked CSR operands (shapes agree)."""
    p = b.shape[1]
    if p > COMPACT_COLUMNS and p > 4 * b.nnz:
        return _matmat_compact(a, b, nt)
    V = value_dtype(a.data.dtype, b.data.dtype, name="B")
    I = _common_index_dtype(a, b)  # noqa: E741
    a = _with_dtypes(a, I, V)
    b = _with_dtypes(b, I, V)
    m, n = a.shape
    p = b.shape[1]
    if (
        estimated_density(a.shape, a.nnz, b.shape, b.nnz) >= DENSE_OUTPUT_DENSITY
        and product_nnz_upper_bound(a, b) >= DENSE_OUTPUT_DENSITY * m * p
    ):
        Y = np.empty((m, p), dtype=V)
        _core.csr_matmat_dense(
            m, n, p, a.indptr, a.indices, a.data, b.indptr, b.indices, b.data, Y, nt
        )
        return Y
    indptr, indices, data = _core.csr_matmat(
        m, n, p, a.indptr, a.indices, a.data, b.indptr, b.indices, b.data, nt
    )
    if indptr[-1] <= np.iinfo(I).max:
        indptr = indptr.astype(I, copy=False)
    else:
        indices = indices.astype(np.int64)
    return _csr_array((m, p), indptr, indices, data, sorted_indices=False)


def _matmat_compact(a: CSR, b: CSR, nt: int) -> sp.csr_array:
    """``A @ B`` for a B much wider than its nonzeros: computed on B's used columns.

    The kernel keeps a marker (and an accumulator) of B's width per thread; a
    1 x 2**27 B would cost 2 GB of them for an empty product, and 2**62
    columns cannot be allocated at all.  B's column indices are range-checked
    here (the kernel would not see the original ones), mapped onto the sorted
    distinct columns, and the product's indices mapped back.
    """
    n, p = b.shape
    if b.nnz:
        lo, hi = int(b.indices.min()), int(b.indices.max())
        if lo < 0 or hi >= p:
            bad = lo if lo < 0 else hi
            raise ValueError(f"B has column index {bad}, expected 0 <= index < B.shape[1] = {p}")
    used = np.unique(b.indices)
    local = np.searchsorted(used, b.indices).astype(b.indices.dtype, copy=False)
    narrow = CSR((n, int(used.size)), b.indptr, np.ascontiguousarray(local), b.data)
    C = _matmat_csr(a, narrow, nt)
    C = sp.csr_array(C) if not sp.issparse(C) else C
    index = np.int64 if p - 1 > np.iinfo(np.int32).max else C.indices.dtype
    cols = used.astype(index, copy=False)[C.indices]
    indptr = C.indptr.astype(index, copy=False)
    return _csr_array(
        (a.shape[0], p), indptr, cols, C.data, sorted_indices=bool(C.has_sorted_indices)
    )


def lincomb(
    mats: Sequence,
    coeffs,
    *,
    n_threads: int | None = None,
    drop_rounding: float | None = None,
    term_errors: Sequence | None = None,
):
    """``sum_t coeffs[t] * mats[t]`` for matrices of one shape.

    Parameters
    ----------
    mats : sequence of scipy sparse matrices/arrays or ndarrays, all the same shape
        Operands with a zero coefficient are skipped.
    coeffs : sequence of float, len(mats)
        Cast to the matrices' value type (as ``E`` in :func:`encode_row_blocks`).
    n_threads : int or None
        Threads to use; None means all cores.
    drop_rounding : float or None
        Sparse results only. ``None`` keeps every entry of the union of the
        operands' structures, cancellations included. A number ``f >= 0``
        drops the entries that are zero to within the rounding of their own
        sum: ``|C_ij| <= f * eps * sum_t |coeffs[t] * mats[t][i, j]|`` (eps of
        the value type; ``0`` drops exact zeros only). A relative bound per
        entry, never a fixed threshold: an entry as small as you like stays
        when its terms are as small.
    term_errors : sequence of (row, col) vector pairs, or None
        With ``drop_rounding`` only: the rounding each operand carried in.
        Entry ``(i, j)`` of ``mats[t]`` may be off by ``row[i] * col[j] *
        eps`` (for a product ``P @ Q``: about ``nnz(P[i]) * ||P[i, :]|| *
        ||Q[:, j]||``), which joins the sum above as ``|coeffs[t]| * row[i]
        * col[j]``. Finite and >= 0, of lengths ``shape[0]`` and ``shape[1]``.

    Returns
    -------
    scipy.sparse.csr_array or ndarray
        CSR (sorted, distinct indices) when every operand is sparse; a dense
        ndarray as soon as one operand is a dense ndarray. The value type is
        the promotion of the matrices' (float32 or float64).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparsecoded.kernels import lincomb
    >>> I2 = sp.csr_array(np.eye(2))
    >>> lincomb([I2, I2], [2.0, -0.5]).toarray()
    array([[1.5, 0. ],
           [0. , 1.5]])
    """
    nt = check_n_threads(n_threads)
    drop = -1.0
    if drop_rounding is not None:
        if isinstance(drop_rounding, bool) or not isinstance(
            drop_rounding, (int, float, np.number)
        ):
            raise ValueError(f"drop_rounding must be a number or None, found {drop_rounding!r}")
        drop = float(drop_rounding)
        if not (math.isfinite(drop) and drop >= 0):
            raise ValueError(f"drop_rounding must be finite and >= 0, found {drop_rounding!r}")
    if isinstance(mats, (np.ndarray, str)) or sp.issparse(mats):
        raise ValueError("mats must be a list of matrices, found a single array")
    mats = list(mats)
    if term_errors is not None:
        if drop_rounding is None:
            raise ValueError(
                "term_errors is only used with drop_rounding, found drop_rounding=None"
            )
        term_errors = list(term_errors)
        if len(term_errors) != len(mats):
            raise ValueError(
                f"term_errors has {len(term_errors)} entries, expected len(mats) = {len(mats)}"
            )
    c = np.asarray(coeffs)
    if c.ndim != 1 or c.shape[0] != len(mats):
        raise ValueError(f"coeffs has shape {c.shape}, expected ({len(mats)},) = (len(mats),)")
    if not mats:
        raise ValueError("mats is empty, expected at least one matrix")
    value_dtype(c.dtype, name="coeffs")
    shape = tuple(int(s) for s in mats[0].shape)
    for t, M in enumerate(mats):
        if np.ndim(M) != 2 or tuple(int(s) for s in M.shape) != shape:
            raise ValueError(
                f"mats[{t}] has shape {tuple(np.shape(M))}, expected mats[0].shape = {shape}"
            )
    sparse_at = [t for t, M in enumerate(mats) if sp.issparse(M)]
    dense_at = [t for t, M in enumerate(mats) if not sp.issparse(M)]
    for t in dense_at:
        value_dtype(np.asarray(mats[t]).dtype, name=f"mats[{t}]")
    # the precision the kernel works in; coefficients must be finite in it: 1e300
    # is finite in float64 but inf once cast to float32 (encode_row_blocks checks alike)
    V = value_dtype(
        *(np.asarray(M).dtype if not sp.issparse(M) else M.dtype for M in mats), name="mats"
    )
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(c.astype(V))
    if not np.all(finite):
        t = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"coeffs must be finite, found {c[t]} at coeffs[{t}] (as {V})")
    if not dense_at:
        errors = None
        if term_errors is not None:
            errors = [_check_term_error(e, shape, t) for t, e in enumerate(term_errors)]
        return _lincomb_sparse(shape, mats, c, sparse_at, None, nt, drop, errors)
    # a dense operand makes the result dense: the sparse operands still go
    # through the checked CSR kernel (never an unchecked scipy conversion),
    # and the dense ones are added to its result
    out = np.zeros(shape, dtype=V)
    if sparse_at:
        S = _lincomb_sparse(shape, [mats[t] for t in sparse_at], c[sparse_at], sparse_at, V, nt)
        out += S.toarray()
    for t, coef in zip(dense_at, c[dense_at].astype(V), strict=True):
        if coef != 0:
            out += coef * np.asarray(mats[t], dtype=V)
    return out


def _check_term_error(pair, shape, t):
    try:
        row, col = pair
    except (TypeError, ValueError):
        raise ValueError(f"term_errors[{t}] must be a (row, col) pair of vectors") from None
    out = []
    for what, v, n in (("row", row, shape[0]), ("col", col, shape[1])):
        a = np.asarray(v, dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"term_errors[{t}] {what} has shape {a.shape}, expected ({n},)")
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"term_errors[{t}] {what} must be finite and >= 0")
        out.append(a)
    return tuple(out)


def _lincomb_sparse(
    shape, mats, c, positions, V, nt: int, drop: float = -1.0, errors=None
) -> sp.csr_array:
    """The all-sparse lincomb: operands checked by as_csr and by csr_check in C++."""
    ops = [as_csr(M, f"mats[{t}]", dtype=V) for t, M in zip(positions, mats, strict=True)]
    if V is None:
        V = value_dtype(*(o.data.dtype for o in ops), name="mats")
    scales = []
    if errors is not None:
        scales = [
            (np.ascontiguousarray(r, dtype=V), np.ascontiguousarray(q, dtype=V)) for r, q in errors
        ]
    I = _common_index_dtype(*ops)  # noqa: E741
    ops = [_with_dtypes(o, I, V) for o in ops]
    indptr, indices, data = _core.csr_lincomb(
        shape[0],
        shape[1],
        [(o.indptr, o.indices, o.data) for o in ops],
        np.ascontiguousarray(c, dtype=V),
        nt,
        drop,
        scales,
    )
    if indptr[-1] <= np.iinfo(I).max:
        indptr = indptr.astype(I, copy=False)
    else:
        indices = indices.astype(np.int64)
    return _csr_array(shape, indptr, indices, data)
