"""PageRank of the Slashdot social graph on 8 coded workers, two of them slow.

    python examples/pagerank.py [graph.mtx.gz]

Each power-iteration step is one coded round: the two delayed workers are
never waited for.  The ranks equal scipy's power iteration to 1e-9.
"""

import time

import numpy as np
import scipy.sparse as sp
from _data import load

from sparsecoded import CodedMatVec, LocalPool, design_mv
from sparsecoded.learn import pagerank, transition_matrix
from sparsecoded.stragglers import FixedDelay

G, source = load("soc-Slashdot0902", lambda: sp.random_array((5000, 5000), density=0.002, rng=0))
M, dangling = transition_matrix(G)
print(f"graph {source}: {M.shape[0]} nodes, {G.nnz} edges, {int(dangling.sum())} dangling")

t0 = time.perf_counter()
reference = pagerank(M, dangling)
scipy_seconds = time.perf_counter() - t0

with LocalPool(8) as pool:
    op = CodedMatVec(M, design_mv(8, 6, seed=0), pool, stragglers=FixedDelay([2, 5], seconds=0.5))
    t0 = time.perf_counter()
    coded = pagerank(op, dangling)
    coded_seconds = time.perf_counter() - t0
    print(f"last round: answered {op.report.answered}, cancelled {op.report.cancelled}")

error = np.abs(coded.x - reference.x).max() / np.abs(reference.x).max()
top = np.argsort(coded.x)[::-1][:5]
print(
    f"{coded.iterations} iterations: coded {coded_seconds:.2f} s (workers 2 and 5 sleep 0.5 s "
    f"a round and are never waited for), scipy in-process {scipy_seconds:.2f} s"
)
print(f"top nodes {top.tolist()}, max relative error vs scipy {error:.1e}")
assert error < 1e-9
