"""Coded jobs end to end: every scheme exact against scipy, stragglers, crashes, bad input.

Each job runs on the in-process InlinePool (simulated clock) and on LocalPool
(real processes); the exactness tests also on DaskPool over a LocalCluster.
Crash and restart behaviour of DaskPool itself is tested in test_daskpool.py.
"""

import time

import numpy as np
import pytest
import scipy.sparse as sp

from sparsecoded import (
    CodedMatMat,
    CodedMatVec,
    InlinePool,
    LocalPool,
    NotEnoughWorkers,
    design_mm,
    design_mv,
)
from sparsecoded.decode import DEFAULT_MAX_CONDITION_FLOAT32
from sparsecoded.stragglers import Crash, FixedDelay

N, K = 8, 6
MV_SCHEMES = [
    ("sparse", K),
    ("mds", K),
    ("polynomial", K),
    ("orthopoly", K),
    ("replication", 4),
    ("uncoded", N),
]
MM_SCHEMES = ["sparse", "mds", "polynomial", "orthopoly", "rkrp"]


@pytest.fixture(scope="module")
def local_pool():
    with LocalPool(N, timeout=20) as pool:
        yield pool


@pytest.fixture(scope="module")
def dask_pool():
    distributed = pytest.importorskip("distributed")
    from sparsecoded import DaskPool

    with (
        distributed.LocalCluster(
            n_workers=N, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        pool = DaskPool(client, timeout=60)
        yield pool
        pool.close()


@pytest.fixture(params=["inline", "local"])
def pool(request, local_pool):
    if request.param == "local":
        return local_pool
    return InlinePool(N)


@pytest.fixture(params=["inline", "local", "dask"])
def any_pool(request):
    if request.param == "inline":
        return InlinePool(N)
    return request.getfixturevalue(f"{request.param}_pool")


@pytest.fixture
def A(rng):
    return sp.random_array((403, 120), density=0.05, format="csr", rng=rng)


def rel_err(y, ref):
    return np.linalg.norm(np.asarray(y) - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize(("scheme", "k"), MV_SCHEMES)
def test_matvec_every_scheme_exact(any_pool, A, rng, scheme, k):
    code = design_mv(N, k, scheme, seed=1)
    x = rng.standard_normal(A.shape[1])
    X = rng.standard_normal((A.shape[1], 3))
    with CodedMatVec(A, code, any_pool) as op:
        assert rel_err(op @ x, A @ x) < 1e-9
        assert rel_err(op(X), A @ X) < 1e-9
        assert op.report.condition >= 1.0
        assert len(op.report.rows_used) == k


@pytest.mark.parametrize("scheme", ["sparse", "mds"])
def test_matvec_float32(any_pool, rng, scheme):
    A = sp.random_array((300, 90), density=0.05, format="csr", rng=rng, dtype=np.float32)
    x = rng.standard_normal(90).astype(np.float32)
    with CodedMatVec(A, design_mv(N, K, scheme, seed=2), any_pool) as op:
        y = op @ x
        assert y.dtype == np.float32
        ref = A.astype(np.float64) @ x.astype(np.float64)
        assert rel_err(y, ref) < 1e-6 * op.report.condition


@pytest.mark.parametrize("scheme", ["sparse", "uncoded"])
def test_answers_of_successive_calls_are_independent_arrays(A, rng, scheme):
    # the stacked results live in a buffer kept between rounds: no answer may alias it
    code = design_mv(N, K if scheme == "sparse" else N, scheme, seed=1)
    x1, x2 = rng.standard_normal(A.shape[1]), rng.standard_normal(A.shape[1])
    with InlinePool(N) as pool, CodedMatVec(A, code, pool) as op:
        y1 = op @ x1
        kept = y1.copy()
        y2 = op @ x2
        np.testing.assert_array_equal(y1, kept)
        assert rel_err(y2, A @ x2) < 1e-9
        X = np.stack([x1, x2], axis=1)
        assert rel_err(op @ X, A @ X) < 1e-9  # another shape: a new buffer
        np.testing.assert_array_equal(y1, kept)


def test_float32_jobs_decode_within_float32_accuracy(rng):
    # n = 20, k = 16 with 4 stragglers; x in float64 is cast to the job's float32
    A = sp.random_array((4000, 500), density=0.05, format="csr", rng=rng, dtype=np.float32)
    x = rng.standard_normal(500)
    ref = A.astype(np.float64) @ x.astype(np.float32).astype(np.float64)
    slow = FixedDelay([0, 1, 2, 3], seconds=1.0)
    with InlinePool(20) as pool:
        with CodedMatVec(A, design_mv(20, 16, seed=0), pool, stragglers=slow) as op:
            y = op @ x
            assert y.dtype == np.float32  # the precision it was computed in
            assert op._decoder.max_condition == DEFAULT_MAX_CONDITION_FLOAT32
            assert rel_err(y, ref) < 1e-4
        # the real Vandermonde code's 16-worker systems (cond ~1e8) would give
        # garbage in float32: the round waits for more workers instead
        with CodedMatVec(A, design_mv(20, 16, "polynomial"), pool, stragglers=slow) as op:
            y = op @ x
            assert len(op.report.answered) > 16
            assert rel_err(y, ref) < 0.05


@pytest.mark.parametrize("scheme", MM_SCHEMES)
def test_matmat_every_scheme_exact(any_pool, rng, scheme):
    A = sp.random_array((90, 60), density=0.05, format="csr", rng=rng)
    B = sp.random_array((60, 70), density=0.05, format="csr", rng=rng)
    code = design_mm(N, 2, 3, scheme, seed=3)
    with CodedMatMat(A, B, code, any_pool) as job:
        C = job.compute()
    ref = (A @ B).toarray()
    dense = C.toarray() if sp.issparse(C) else C
    assert C.shape == ref.shape
    assert np.abs(dense - ref).max() <= 1e-9 * max(1.0, np.abs(ref).max())


def test_delayed_stragglers_are_not_waited_for(local_pool, A, rng):
    code = design_mv(N, K, "sparse", seed=4)
    slow = [1, 5]
    x = rng.standard_normal(A.shape[1])
    with CodedMatVec(A, code, local_pool, stragglers=FixedDelay(slow, 2.0)) as op:
        t0 = time.perf_counter()
        y = op @ x
        elapsed = time.perf_counter() - t0
        assert elapsed < 1.0
        assert rel_err(y, A @ x) < 1e-9
        assert set(op.report.answered).isdisjoint(slow)
        assert set(slow) <= set(op.report.cancelled)
        # the same fast responders again: the factorisation is reused
        op @ x
        assert op.report.decode_cached


def test_uncoded_waits_for_its_straggler(local_pool, A, rng):
    code = design_mv(N, N, "uncoded")
    x = rng.standard_normal(A.shape[1])
    with CodedMatVec(A, code, local_pool, stragglers=FixedDelay([3], 0.6)) as op:
        t0 = time.perf_counter()
        y = op @ x
        assert time.perf_counter() - t0 >= 0.6
    assert rel_err(y, A @ x) < 1e-12


def test_s_crashes_survive_and_the_next_round_uses_respawned_workers(local_pool, A, rng):
    code = design_mv(N, K, "sparse", seed=5)
    x = rng.standard_normal(A.shape[1])
    with CodedMatVec(A, code, local_pool, stragglers=Crash([0, 7], rounds=[0])) as op:
        assert rel_err(op @ x, A @ x) < 1e-9
        assert op.report.dead == [0, 7]
        assert rel_err(op @ x, A @ x) < 1e-9
        assert op.report.dead == []


def test_more_than_s_dead_is_a_clear_error_not_a_hang(pool, A, rng):
    code = design_mv(N, K, "sparse", seed=6)
    x = rng.standard_normal(A.shape[1])
    with CodedMatVec(A, code, pool, stragglers=Crash([0, 3, 6], rounds=[0]), timeout=15) as op:
        t0 = time.perf_counter()
        with pytest.raises(
            NotEnoughWorkers,
            match=r"needs results covering all k = 6 blocks.*dead workers \[0, 3, 6\]",
        ):
            op @ x
        assert time.perf_counter() - t0 < 10
        assert rel_err(op @ x, A @ x) < 1e-9  # round 1: respawned, no crash injected


def test_a_dead_worker_does_not_turn_an_ill_conditioned_round_into_an_error(any_pool, A, rng):
    # no system is within max_condition = 1, so the round holds out for more
    # results; with worker 0 dead the other 7 are all there is, and they decode
    code = design_mv(N, K, "sparse", seed=6)
    x = rng.standard_normal(A.shape[1])
    crash = Crash([0], rounds=[0])
    with CodedMatVec(A, code, any_pool, stragglers=crash, max_condition=1.0, timeout=15) as op:
        assert rel_err(op @ x, A @ x) < 1e-9
        assert op.report.dead == [0]
        assert sorted(op.report.answered) == list(range(1, N))
        assert op.report.condition > 1.0


def test_heterogeneous_devices_decode_from_their_rows(pool, A, rng):
    code = design_mv(4, 6, "sparse", capacities=[3, 2, 2, 1], seed=7)
    x = rng.standard_normal(A.shape[1])
    with CodedMatVec(A, code, pool) as op:
        assert rel_err(op @ x, A @ x) < 1e-9
        assert set(op.report.compute_seconds) <= {0, 1, 2, 3}  # keyed by physical device
        assert len(op.report.rows_used) == 6


def test_bad_input(pool, A, rng):
    code = design_mv(N, K, "sparse", seed=8)
    with CodedMatVec(A, code, pool) as op:
        with pytest.raises(ValueError, match=r"x has length 5, expected A.shape\[1\] = 120"):
            op @ np.ones(5)
        with pytest.raises(ValueError, match=r"X has 7 rows, expected A.shape\[1\] = 120"):
            op @ np.ones((7, 2))
        with pytest.raises(ValueError, match="x must be a vector or a 2-D matrix, got 3-D"):
            op @ np.ones((120, 2, 2))
        with pytest.raises(ValueError, match="found a scipy sparse csr matrix; use CodedMatMat"):
            op @ sp.csr_array(np.ones((120, 1)))
        x = np.ones(120)
        x[7] = np.inf
        with pytest.raises(ValueError, match="x must be finite, found inf at index 7"):
            op @ x
    with pytest.raises(ValueError, match="k = 6 row blocks, but A has only 4 rows"):
        CodedMatVec(sp.random_array((4, 10), density=0.5, format="csr", rng=rng), code, pool)
    with pytest.raises(
        ValueError, match="the pool has 8 workers, expected at least the code's 10 devices"
    ):
        CodedMatVec(A, design_mv(10, 6, seed=0), pool)
    B = sp.random_array((119, 5), density=0.5, format="csr", rng=rng)
    with pytest.raises(ValueError, match=r"B has 119 rows, expected A.shape\[1\] = 120"):
        CodedMatMat(A, B, design_mm(N, 2, 2, seed=0), pool)


def test_ill_conditioned_first_responders_make_the_round_wait(rng):
    from sparsecoded import MVCode

    # workers 0 and 1 answer first, but their rows are nearly parallel (cond ~ 4e12)
    E = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-12], [1.0, -1.0], [2.0, 1.0]])
    code = MVCode.from_matrix(E)
    A = sp.random_array((40, 30), density=0.2, format="csr", rng=rng)
    x = rng.standard_normal(30)
    late = FixedDelay([2, 3], 1.0)
    with CodedMatVec(A, code, InlinePool(4), stragglers=late) as op:
        y = op @ x
        assert rel_err(y, A @ x) < 1e-9
        assert len(op.report.answered) == 3  # waited for exactly one more worker
        assert op.report.condition < 1e3
    with CodedMatVec(A, code, InlinePool(4), stragglers=late, max_condition=1e14) as op:
        op @ x  # a lax threshold accepts the first two, at the price of accuracy
        assert sorted(op.report.answered) == [0, 1]
        assert op.report.condition > 1e12


def test_matmat_with_dense_worker_products_keeps_the_sparsity_of_a_at_b(rng):
    # a banded A: the coded blocks' products are dense enough that the kernel
    # returns them dense; the decoded A @ A must still store about scipy's nnz
    n = 600
    A = sp.diags_array(
        [rng.standard_normal(n - abs(d)) for d in range(-12, 13)], offsets=range(-12, 13)
    ).tocsr()
    ref = sp.csr_array(A @ A)
    ref.eliminate_zeros()
    with InlinePool(N) as pool:
        job = CodedMatMat(A, A, design_mm(N, 2, 3, seed=0), pool)
        out = job.compute()
    got = sp.csr_array(out)
    assert got.nnz <= 1.05 * ref.nnz, (got.nnz, ref.nnz)
    err = abs(got - ref).max() / abs(ref).max()
    assert err < 1e-9


def test_lincomb_checks_coefficients_in_the_working_precision():
    from sparsecoded.kernels import lincomb

    M = sp.csr_array(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"coeffs must be finite, found 1e\+300 .*float32"):
        lincomb([M, M], [1e300, -1e300])
    assert np.isfinite(lincomb([M.astype(np.float64)] * 2, [1e300, -1e300]).toarray()).all()


def test_finer_partition_mm_groups_each_device_products_into_one(rng):
    # design_mm(24, 4, 5): each device holds 1 A-slot and 12 B-slots (288 products); the
    # job multiplies them as one product per device and cuts its columns into the rows
    code = design_mm(24, 4, 5, seed=0)
    assert code.n_rows > code.n_workers
    A = sp.random_array((400, 300), density=0.03, format="csr", rng=rng)
    B = sp.random_array((300, 360), density=0.03, format="csr", rng=rng)
    ref = sp.csr_array(A @ B)
    with InlinePool(24) as pool:
        job = CodedMatMat(A, B, code, pool, stragglers=Crash([0, 5, 11, 23]))
        got = sp.csr_array(job.compute())
        assert job._n_slots == 24
        assert job._n_rows_placed == code.n_rows
    assert abs(got - ref).max() <= 1e-10 * abs(ref).max()
    assert got.nnz <= 1.05 * ref.nnz
    with InlinePool(24) as pool:  # every product on its own: partial work counts
        job = CodedMatMat(A, B, code, pool, group=False)
        got = sp.csr_array(job.compute())
        assert job._n_slots == code.n_rows
    assert abs(got - ref).max() <= 1e-10 * abs(ref).max()
