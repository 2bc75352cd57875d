"""Conjugate gradients on the bcsstk16 stiffness matrix, through a coded operator.

    python examples/cg.py [spd.mtx.gz]

scipy's ``cg`` drives the coded operator directly (it is a LinearOperator);
every matrix-vector product tolerates 2 slow or dead workers of 8.
"""

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from _data import load

from sparsecoded import CodedMatVec, LocalPool, design_mv
from sparsecoded.stragglers import Crash


def stand_in():
    B = sp.random_array((2000, 2000), density=0.003, rng=0)
    return B @ B.T + 10 * sp.eye_array(2000)


K, source = load("bcsstk16", stand_in)
b = np.ones(K.shape[0])
x_ref, info = spla.cg(K, b, rtol=1e-10, maxiter=5000)
assert info == 0

with LocalPool(8) as pool:
    op = CodedMatVec(K, design_mv(8, 6, seed=0), pool, stragglers=Crash([1, 6]))
    x, info = spla.cg(op, b, rtol=1e-10, maxiter=5000)
    print(f"{source}: cg info {info}, dead workers in the last round {op.report.dead}")

residual = np.linalg.norm(K @ x - b) / np.linalg.norm(b)
error = np.linalg.norm(x - x_ref) / np.linalg.norm(x_ref)
print(f"relative residual {residual:.1e}, difference from scipy's cg {error:.1e}")
assert info == 0
assert error < 1e-6
