"""Fixtures of the kernel benchmarks.

With benchmarks disabled (the default addopts), every benchmark body runs
once as a plain test on matrices ``SMALL`` times smaller, so ``pytest bench``
checks correctness in seconds; ``pytest bench --benchmark-enable`` uses the
full sizes.
"""

from __future__ import annotations

import os
import sys

# The job benchmarks time a decode in this process: k x k solves against long right-hand
# sides.  On a small busy machine a threaded BLAS spends far longer waking its threads than
# solving (measured: 10-20 ms instead of 0.06 ms for k = 4, 750 columns), so the master's
# BLAS is single-threaded.  Must be set before numpy loads BLAS, hence before its import.
# OMP_NUM_THREADS is left alone: it would also bind the OpenMP kernels benchmarked here.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# MKL (the second kernel baseline, sparse_dot_mkl) from the pip wheel: sparse_dot_mkl finds
# the runtime through MKL_RT. Its OpenMP threads (Intel's runtime) spin for 200 ms after
# each call by default, which on 2 cores steals time from whatever runs next, our kernels
# included; KMP_BLOCKTIME=0 puts them to sleep at once (each MKL call is >10 ms, so waking
# them costs it nothing measurable).
_mkl_rt = os.path.join(sys.prefix, "lib", "libmkl_rt.so.3")
if os.path.exists(_mkl_rt):
    os.environ.setdefault("MKL_RT", _mkl_rt)
os.environ.setdefault("KMP_BLOCKTIME", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402

SMALL = 50


@pytest.fixture(scope="session")
def full_size(request) -> bool:
    opt = request.config.getoption
    return bool(opt("benchmark_enable")) or not opt("benchmark_disable")


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


def row_uniform_csr(rng, m, c, density, dtype=np.float64):
    """m x c CSR with round(density * c) sorted random columns per row.

    Much faster than scipy.sparse.random_array at 10^8 nonzeros; a row may
    repeat a column (both sides sum repeats), which is harmless for products.
    """
    r = max(1, round(density * c))
    cols = rng.integers(0, c, size=(m, r), dtype=np.int32)
    cols.sort(axis=1)
    data = rng.standard_normal(m * r).astype(dtype)
    indptr = (
        np.arange(0, m * r + 1, r, dtype=np.int32) if m * r < 2**31 else np.arange(0, m * r + 1, r)
    )
    return sp.csr_array((data, cols.reshape(-1), indptr), shape=(m, c))
