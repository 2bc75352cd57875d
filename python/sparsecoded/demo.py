"""``sparsecoded demo``: encode a random sparse matrix for n workers and check the products."""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from . import kernels


def run_demo(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    m, c = args.size
    A = sp.random_array((m, c), density=args.density, format="csr", rng=rng)
    x = rng.standard_normal(c)
    n, k = args.workers, args.k
    E = rng.standard_normal((n, k))
    t0 = time.perf_counter()
    blocks = kernels.encode_row_blocks(A, E)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    ys = [kernels.matvec(b, x) for b in blocks]
    t_mv = time.perf_counter() - t0
    b = blocks[0].shape[0]
    Y = np.stack(ys)  # n x b
    Z = np.linalg.lstsq(E[:k], Y[:k], rcond=None)[0].reshape(-1)[:m]
    err = np.linalg.norm(Z - A @ x) / np.linalg.norm(A @ x)
    print(f"A: {m} x {c}, nnz {A.nnz}; n = {n} workers, k = {k} blocks of {b} rows")
    print(f"encode {t_enc * 1e3:.1f} ms, {n} worker products {t_mv * 1e3:.1f} ms")
    print(f"relative error against scipy A @ x: {err:.2e}")
    return 0 if err < 1e-8 else 1
