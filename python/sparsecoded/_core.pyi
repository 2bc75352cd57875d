"""Type stub of the compiled core (cpp/src/bind_*.cpp).

Every array argument is taken without conversion (pybind11 ``noconvert``): the
caller (``sparsecoded.kernels``) passes C-contiguous arrays of the dtypes the
kernel was instantiated for (float32/float64 values, int32/int64 indices).
Inputs are validated by the kernels themselves; errors raise ValueError,
IndexError or MemoryError.
"""

import numpy as np
from numpy.typing import NDArray

_Index = NDArray[np.int32] | NDArray[np.int64]
_Values = NDArray[np.float32] | NDArray[np.float64]

def openmp_available() -> bool: ...
def default_threads() -> int: ...

# instruction-set variants of the SpMV / SpMM row loops (bind_runtime.cpp)
def _isa() -> str: ...
def _isa_best() -> str: ...
def _isa_supported() -> list[str]: ...
def _isa_vector_bits() -> int: ...
def _set_isa(name: str) -> None: ...
def csr_matvec(
    n_rows: int,
    n_cols: int,
    indptr: _Index,
    indices: _Index,
    data: _Values,
    x: _Values,
    y: _Values,
    n_threads: int,
) -> None: ...
def csr_matvecs(
    n_rows: int,
    n_cols: int,
    n_vecs: int,
    indptr: _Index,
    indices: _Index,
    data: _Values,
    X: _Values,
    Y: _Values,
    n_threads: int,
) -> None: ...
def csr_encode(
    m: int,
    c: int,
    indptr: _Index,
    indices: _Index,
    data: _Values,
    k: int,
    b: int,
    E: _Values,
    n_threads: int,
) -> tuple[NDArray[np.int64], _Index, _Values]: ...
def csr_lincomb(
    n_rows: int,
    n_cols: int,
    mats: list[tuple[_Index, _Index, _Values]],
    coeffs: _Values,
    n_threads: int,
    drop: float = -1.0,
    scales: list[tuple[_Values, _Values]] = ...,
) -> tuple[NDArray[np.int64], _Index, _Values]: ...
def csr_matmat(
    n_rows: int,
    n_inner: int,
    n_cols: int,
    a_indptr: _Index,
    a_indices: _Index,
    a_data: _Values,
    b_indptr: _Index,
    b_indices: _Index,
    b_data: _Values,
    n_threads: int,
) -> tuple[NDArray[np.int64], _Index, _Values]: ...
def csr_matmat_dense(
    n_rows: int,
    n_inner: int,
    n_cols: int,
    a_indptr: _Index,
    a_indices: _Index,
    a_data: _Values,
    b_indptr: _Index,
    b_indices: _Index,
    b_data: _Values,
    Y: _Values,
    n_threads: int,
) -> None: ...
