"""Benchmarks run with single-threaded BLAS in the master process.

The decode solves a k x k system against long right-hand sides; on a small,
busy machine a threaded BLAS spends far longer waking its threads than
solving (measured here: 10-20 ms instead of 0.06 ms for k = 4, 750 columns).
The variables must be set before numpy loads BLAS, hence here.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
