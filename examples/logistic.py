"""Logistic regression by gradient descent on a9a, coded, with two slow devices.

    python examples/logistic.py [features.mtx.gz]

Each step needs ``A @ w`` and ``A.T @ r``; both are coded rounds that never
wait for the two delayed workers.  a9a ships without labels here, so labels
come from a seeded planted model.  The coded run equals the in-process scipy
run to 1e-9.
"""

import time

import scipy.sparse as sp
from _data import load

from sparsecoded import CodedMatVec, LocalPool, design_mv
from sparsecoded.learn import logistic_regression, planted_labels, spectral_norm
from sparsecoded.stragglers import FixedDelay

A, source = load("a9a", lambda: sp.random_array((20000, 123), density=0.11, rng=0))
y, _ = planted_labels(A, seed=0)
step = 1.0 / (spectral_norm(A) ** 2 / (4 * A.shape[0]) + 1e-4)
ref = logistic_regression(A, y, step=step, iterations=50)

with LocalPool(8) as pool:
    op = CodedMatVec(A, design_mv(8, 6, seed=0), pool, stragglers=FixedDelay([2, 5], seconds=0.5))
    t0 = time.perf_counter()
    got = logistic_regression(op, y, step=step, iterations=50)
    seconds = time.perf_counter() - t0

rel = abs(got.losses[-1] - ref.losses[-1]) / ref.losses[-1]
print(f"{source}: 50 steps in {seconds:.2f} s with workers 2 and 5 sleeping 0.5 s per round")
print(
    f"loss {got.losses[0]:.4f} -> {got.losses[-1]:.4f}, accuracy {got.accuracy:.3f} "
    f"(scipy {ref.accuracy:.3f}), loss relative difference {rel:.1e}"
)
assert rel < 1e-9
assert got.accuracy == ref.accuracy
