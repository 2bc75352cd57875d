"""Least squares with LSQR on a9a (32,561 samples x 123 features), coded both ways.

    python examples/lsqr.py [features.mtx.gz]

LSQR needs ``A @ v`` and ``A.T @ u`` every step: both run on the workers
(coded row blocks and coded column blocks), each tolerating 2 stragglers.
The targets come from a seeded planted model (a9a ships without labels here).
"""

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from _data import load

from sparsecoded import CodedMatVec, LocalPool, design_mv
from sparsecoded.stragglers import FixedDelay

A, source = load("a9a", lambda: sp.random_array((20000, 123), density=0.11, rng=0))
rng = np.random.default_rng(0)
b = A @ rng.standard_normal(A.shape[1]) + 0.01 * rng.standard_normal(A.shape[0])
ref = spla.lsqr(A, b, atol=1e-12, btol=1e-12, iter_lim=1000)

with LocalPool(8) as pool:
    op = CodedMatVec(A, design_mv(8, 6, seed=0), pool, stragglers=FixedDelay([0, 3], seconds=0.5))
    got = spla.lsqr(op, b, atol=1e-12, btol=1e-12, iter_lim=1000)
    print(f"{source}: {got[2]} LSQR steps; transpose rounds cancelled {op.T.report.cancelled}")

error = np.linalg.norm(got[0] - ref[0]) / np.linalg.norm(ref[0])
print(f"residual norm {got[3]:.4g} (scipy {ref[3]:.4g}), difference from scipy {error:.1e}")
assert error < 1e-6
