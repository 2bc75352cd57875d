"""CodedMatVec as a scipy LinearOperator: transposes on the workers, solvers, futures, threads.

scipy.sparse is the oracle throughout: every coded product is compared with
the same product on ``A``.
"""

import gc
import logging
import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from sparsecoded import (
    CodedMatVec,
    InlinePool,
    LocalPool,
    NotEnoughWorkers,
    RoundTimeout,
    certify,
    design_mv,
)
from sparsecoded.stragglers import Crash, FixedDelay

N, K = 8, 6


def _close(a, b, tol=1e-9):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.abs(b).max(), 1e-300)
    return np.abs(a - b).max() <= tol * scale


@pytest.fixture
def A(rng):
    return sp.random_array((300, 120), density=0.05, format="csr", rng=rng)


@pytest.fixture
def code():
    return design_mv(N, K, seed=3)


@pytest.fixture(scope="module")
def local_pool():
    with LocalPool(N, timeout=30) as pool:
        yield pool


def test_is_a_linear_operator_with_both_directions(A, code, rng):
    with InlinePool(N) as pool, CodedMatVec(A, code, pool) as op:
        assert isinstance(op, spla.LinearOperator)
        assert op.shape == (300, 120)
        assert op.dtype == np.float64
        assert "CodedMatVec 300x120" in repr(op)
        assert "not placed" in repr(op)
        x, y = rng.standard_normal(120), rng.standard_normal(300)
        X, Y = rng.standard_normal((120, 3)), rng.standard_normal((300, 4))
        assert _close(op @ x, A @ x)
        assert _close(op.matvec(x), A @ x)
        assert op.matvec(x[:, None]).shape == (300, 1)
        assert _close(op @ X, A @ X)
        assert _close(op.matmat(X), A @ X)
        assert not pool._jobs or len(pool._jobs) == 1  # the transpose is placed lazily
        assert _close(op.T @ y, A.T @ y)
        assert _close(op.rmatvec(y), A.T @ y)
        assert _close(op.H @ y, A.T @ y)
        assert _close(op.adjoint() @ y, A.T @ y)
        assert _close(op.T @ Y, A.T @ Y)
        assert _close(op.rmatmat(Y), A.T @ Y)
        assert op.T.shape == (120, 300)
        assert op.T.T is op
        assert len(pool._jobs) == 2  # ... and then kept
        assert "placed" in repr(op)
        assert "not placed" not in repr(op)
        normal = op.T @ op  # composition: a scipy product operator
        assert _close(normal @ x, A.T @ (A @ x))
        assert _close((2 * op) @ x, 2 * (A @ x))
        assert op.report.direction == "matvec"
        assert op.T.report.direction == "rmatvec"
        assert [r.direction for r in op.history][-1] == "matvec"


def test_transpose_code_certifies_and_meets_the_bound(A, code):
    with InlinePool(N) as pool, CodedMatVec(A, code, pool) as op:
        op.T @ np.ones(300)
        tcode = op._backward.code
        assert tcode.weight == code.weight
        assert certify(tcode).straggler_optimal
        # each worker stores one coded row block and one coded column block:
        # at most 2/k of A's rows and columns
        fwd, bwd = op._forward, op._backward
        assert fwd.block_rows == -(-300 // K)
        assert bwd.block_rows == -(-120 // K)


def test_transpose_too_few_columns_is_a_clear_error(rng):
    A = sp.random_array((60, 4), density=0.5, format="csr", rng=rng)
    with InlinePool(N) as pool, CodedMatVec(A, design_mv(N, K, seed=0), pool) as op:
        with pytest.raises(ValueError, match="k = 6 column blocks, but A has only 4 columns"):
            op.T @ np.ones(60)


def test_solvers_take_the_coded_operator(rng):
    m, c = 240, 90
    A = sp.random_array((m, c), density=0.08, format="csr", rng=rng) + sp.eye_array(m, c)
    A = sp.csr_array(A)
    b = rng.standard_normal(m)
    S = sp.csr_array(A.T @ A + sp.eye_array(c))  # symmetric positive definite
    with InlinePool(N) as pool:
        op = CodedMatVec(A, design_mv(N, K, seed=1), pool)
        ref = spla.lsqr(A, b, atol=1e-12, btol=1e-12, iter_lim=500)[0]
        assert _close(spla.lsqr(op, b, atol=1e-12, btol=1e-12, iter_lim=500)[0], ref, 1e-7)
        ref = spla.lsmr(A, b, atol=1e-12, btol=1e-12, maxiter=500)[0]
        assert _close(spla.lsmr(op, b, atol=1e-12, btol=1e-12, maxiter=500)[0], ref, 1e-7)
        k_svd = 3
        s_ref = spla.svds(A, k=k_svd, random_state=0, return_singular_vectors=False)
        s_op = spla.svds(op, k=k_svd, random_state=0, return_singular_vectors=False)
        assert _close(np.sort(s_op), np.sort(s_ref), 1e-8)
        op.close()
        sop = CodedMatVec(S, design_mv(N, K, seed=2), pool)
        rhs = rng.standard_normal(c)
        x_ref = spla.spsolve(sp.csc_array(S), rhs)
        x_cg, info = spla.cg(sop, rhs, rtol=1e-12, maxiter=1000)
        assert info == 0
        assert _close(x_cg, x_ref, 1e-8)
        x_gm, info = spla.gmres(sop, rhs, rtol=1e-12, maxiter=1000)
        assert info == 0
        assert _close(x_gm, x_ref, 1e-8)
        x_mr, info = spla.minres(sop, rhs, rtol=1e-12, maxiter=1000)
        assert info == 0
        assert _close(x_mr, x_ref, 1e-6)
        w_ref = spla.eigsh(S, k=3, which="LA", return_eigenvectors=False)
        w_op = spla.eigsh(sop, k=3, which="LA", return_eigenvectors=False)
        assert _close(np.sort(w_op), np.sort(w_ref), 1e-9)
        sop.close()


def test_transpose_survives_stragglers_and_crashes(A, code, rng, local_pool):
    y = rng.standard_normal(300)
    model = FixedDelay([2, 5], seconds=3.0)
    with CodedMatVec(A, code, local_pool, stragglers=model) as op:
        op.T @ y  # place the column blocks (and warm up) first
        t0 = time.perf_counter()
        out = op.T @ y
        took = time.perf_counter() - t0
        assert _close(out, A.T @ y)
        assert took < 2.0, f"the transpose round waited for a delayed worker ({took:.2f} s)"
        assert {2, 5} <= set(op.T.report.cancelled)
    with CodedMatVec(A, code, local_pool, stragglers=Crash([1, 6])) as op:
        assert _close(op.T @ y, A.T @ y)
        assert _close(op @ y[:120], A @ y[:120])
        assert {1, 6} <= set(op.T.report.dead)


def test_submit_returns_futures_and_rounds_overlap_safely(A, code, rng):
    with InlinePool(N) as pool, CodedMatVec(A, code, pool) as op:
        xs = [rng.standard_normal(120) for _ in range(6)]
        futures = [op.submit(x) for x in xs] + [op.T.submit(np.ones(300))]
        assert all(isinstance(f, Future) for f in futures)
        for f, x in zip(futures, xs, strict=False):
            assert _close(f.result(timeout=30), A @ x)
        assert _close(futures[-1].result(timeout=30), A.T @ np.ones(300))
        with pytest.raises(ValueError, match="x has length 5, expected A.shape\\[1\\] = 120"):
            op.submit(np.ones(5))  # a bad operand is refused at once, not in the future


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_two_threads_share_one_operator_exactly(backend, A, code, rng, local_pool):
    pool = InlinePool(N) if backend == "inline" else local_pool
    calls = 200
    xs = rng.standard_normal((2, calls, 120))
    ys = rng.standard_normal((2, calls, 300))
    wrong: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    with CodedMatVec(A, code, pool) as op:

        def work(t: int) -> None:
            try:
                for i in range(calls):
                    if i % 4 == 3:
                        if not _close(op.T @ ys[t, i], A.T @ ys[t, i]):
                            wrong.append((t, i))
                    elif not _close(op @ xs[t, i], A @ xs[t, i]):
                        wrong.append((t, i))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
    assert not errors, errors
    assert not wrong, f"{len(wrong)} wrong answers, first {wrong[:5]}"


def test_round_timeout_is_a_timeout_error(A, code, local_pool):
    model = FixedDelay(list(range(N)), seconds=5.0)
    with CodedMatVec(A, code, local_pool, stragglers=model) as op:
        with pytest.raises(RoundTimeout) as info:
            op.apply(np.ones(120), timeout=0.5)
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, NotEnoughWorkers)
        assert "round 0" in str(info.value)


def test_bad_matrices_and_operands(code, rng):
    A = sp.random_array((100, 40), density=0.1, format="csr", rng=rng)
    with InlinePool(N) as pool:
        bad = A.copy()
        bad.data[3] = np.nan
        with pytest.raises(ValueError, match="A must be finite, found nan"):
            CodedMatVec(bad, code, pool)
        dense = A.toarray()
        dense[5, 7] = np.inf
        with pytest.raises(ValueError, match=r"A must be finite, found inf at \(5, 7\)"):
            CodedMatVec(dense, code, pool)
        with pytest.raises(ValueError, match="A must be real"):
            CodedMatVec(A.astype(np.complex128), code, pool)
        with CodedMatVec(A, code, pool) as op:
            with pytest.raises(ValueError, match="x must be real, got dtype complex128"):
                op @ (np.ones(40) + 1j)
            with pytest.raises(ValueError, match=r"y has length 40, expected A.shape\[0\] = 100"):
                op.T @ np.ones(40)
            with pytest.raises(ValueError, match="x must hold real numbers, got dtype <U1"):
                op @ np.array(["a"] * 40)
        with pytest.raises(ValueError, match="dtype must be float32 or float64"):
            CodedMatVec(A, code, pool, dtype=np.int64)


def test_dtype_makes_the_precision_explicit(code, rng):
    A = sp.random_array((100, 40), density=0.1, format="csr", rng=rng, dtype=np.float32)
    x = rng.standard_normal(40)
    with InlinePool(N) as pool:
        with CodedMatVec(A, code, pool) as op:
            assert (op @ x).dtype == np.float32
        with CodedMatVec(A, code, pool, dtype=np.float64) as op:
            y = op @ x
            assert y.dtype == np.float64
            assert _close(y, A.astype(np.float64) @ x)


def test_garbage_collected_jobs_leave_the_pool(A, code):
    with InlinePool(N) as pool:
        for _ in range(5):
            op = CodedMatVec(A, code, pool)
            op.T @ np.ones(300)
            del op
        gc.collect()
        assert pool._jobs == {}


def test_history_and_round_callback(A, code):
    seen = []
    with InlinePool(N) as pool, CodedMatVec(A, code, pool, history=3, on_round=seen.append) as op:
        for _ in range(5):
            op @ np.ones(120)
        assert len(seen) == 5
        assert len(op.history) == 3
        assert [r.round_index for r in op.history] == [2, 3, 4]
        assert op.history[-1] is op.report


def test_decode_fallback_warns_on_the_logger(caplog, rng):
    from sparsecoded import MVCode

    E = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-12], [1.0, -1.0], [2.0, 1.0]])
    A = sp.random_array((40, 10), density=0.3, format="csr", rng=rng)
    late = FixedDelay([2, 3], 1.0)  # the nearly parallel rows 0 and 1 answer first
    with (
        InlinePool(4) as pool,
        CodedMatVec(A, MVCode.from_matrix(E), pool, stragglers=late) as op,
        caplog.at_level(logging.WARNING, logger="sparsecoded"),
    ):
        assert _close(op @ np.ones(10), A @ np.ones(10), 1e-6)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("sparsecoded")]
    assert any("waited for 3 results instead of k = 2" in m for m in messages), messages


def test_deleted_jobs_free_their_shared_memory(A, code, local_pool):
    import os

    def segments():
        return {f for f in os.listdir("/dev/shm") if f.startswith("spcd")}

    before = segments()
    for _ in range(5):
        op = CodedMatVec(A, code, local_pool)
        op @ np.ones(120)
        op.T @ np.ones(300)
        del op
    gc.collect()
    assert segments() <= before


def test_closing_another_job_during_a_round_leaves_that_round_exact(A, code, rng, local_pool):
    # a drop swaps LocalPool's shared result areas: it must wait for the round in flight
    x = rng.standard_normal(120)
    slow = FixedDelay(list(range(N)), seconds=0.4)
    with CodedMatVec(A, code, local_pool) as other:
        other @ rng.standard_normal((120, 64))  # grow the result areas
        op = CodedMatVec(A, code, local_pool, stragglers=slow)
        future = op.submit(x)
        time.sleep(0.1)
    y = future.result(timeout=30)  # `other` was closed while this round ran
    assert _close(y, A @ x)
    op.close()


def test_a_finalizer_during_a_round_is_deferred(A, code, rng, local_pool):
    x = rng.standard_normal(120)
    slow = FixedDelay(list(range(N)), seconds=0.4)
    other = CodedMatVec(A, code, local_pool)
    other @ rng.standard_normal((120, 64))
    with CodedMatVec(A, code, local_pool, stragglers=slow) as op:
        future = op.submit(x)
        time.sleep(0.1)
        del other
        gc.collect()  # the finalizer runs now, while the round is in flight
        assert _close(future.result(timeout=30), A @ x)
