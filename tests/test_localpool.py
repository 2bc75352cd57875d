"""LocalPool: exact results, cancellation, crashes, leaks, shutdown, bad input.

Most tests share one module-wide pool (starting spawn workers costs seconds on
the shared CI machine); tests that break or close a pool start their own.
Timing bounds are loose on purpose: the machine is small and shared.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.sparse as sp

from sparsecoded.errors import NotEnoughWorkers, PoolClosed, RoundTimeout
from sparsecoded.pools.base import compute
from sparsecoded.pools.local.pool import SHM_PREFIX, LocalPool
from sparsecoded.stragglers import Action

N = 4
LINUX = os.path.isdir("/proc/self/fd") and os.path.isdir("/dev/shm")
needs_linux = pytest.mark.skipif(not LINUX, reason="counts /proc/self/fd and /dev/shm")


def everyone(n_results):
    return lambda results: len(results) >= n_results


def block(rng, n_rows, n_cols, dtype=np.float64, density=0.3):
    return sp.random_array(
        (n_rows, n_cols), density=density, random_state=rng, format="csr", dtype=dtype
    )


def our_segments(pid=None):
    prefix = f"{SHM_PREFIX}{os.getpid() if pid is None else pid}_"
    return sorted(name for name in os.listdir("/dev/shm") if name.startswith(prefix))


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def gone(pid):
    """True once process ``pid`` has exited and released everything it held.

    For our own children ask waitid without reaping them (the pool still will).
    A zombie in /proc is not enough: its main thread is done while its other
    threads (numpy's BLAS pool) may still hold its file descriptors.
    """
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return info is not None
    except ChildProcessError:  # not our child (or already reaped)
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_until(predicate, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture(scope="module")
def pool():
    with LocalPool(N, timeout=30) as p:
        yield p


@pytest.fixture
def job(pool, request):
    """A fresh job key, dropped after the test."""
    key = request.node.name
    yield key
    if not pool.closed:
        pool.drop(key)


# ----------------------------------------------------------------------------- exact results


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_cols", [None, 3])
def test_matvec_exact_heterogeneous(pool, job, rng, dtype, n_cols):
    # worker 0 holds three blocks, worker 2 none; one block is a csr_matrix with int64
    # indices, one is COO (converted once), one is dense, one has no nonzero at all
    wide = block(rng, 7, 9, dtype)
    wide64 = sp.csr_matrix(
        (wide.data, wide.indices.astype(np.int64), wide.indptr.astype(np.int64)), shape=wide.shape
    )
    payloads = [
        [block(rng, 5, 9, dtype), wide64, sp.csr_array((4, 9), dtype=dtype)],
        [block(rng, 6, 9, dtype).tocoo()],
        [],
        [block(rng, 5, 9, dtype).toarray()],
    ]
    pool.place(job, payloads)
    x = rng.standard_normal(9 if n_cols is None else (9, n_cols)).astype(dtype)
    r = pool.run(job, "matvec", x, enough=everyone(5))
    assert sorted(r.results) == [(0, 0), (0, 1), (0, 2), (1, 0), (3, 0)]
    for (w, s), got in r.results.items():
        payload = payloads[w][s]
        # the pool moves bits, it does not change them: identical to computing here
        np.testing.assert_array_equal(got, compute("matvec", sp.csr_array(payload), x))
        np.testing.assert_allclose(got, payload @ x, rtol=1e-5 if dtype == np.float32 else 1e-12)
        assert got.dtype == np.dtype(dtype)
        assert got.shape == (payload.shape[0],) + (() if n_cols is None else (n_cols,))
    # slots of one worker arrive in their order
    assert [k for k in r.order if k[0] == 0] == [(0, 0), (0, 1), (0, 2)]
    assert r.answered == sorted(r.answered, key=[k[0] for k in r.order].index)
    assert set(r.compute_seconds) == set(r.results)
    assert r.cancelled == []
    assert r.dead == []


def test_operand_grows_and_mixed_precision(pool, job, rng):
    # a float32 block against a float64 operand gives float64; a larger operand and
    # larger results move to larger segments without changing any result
    a = block(rng, 40, 30, np.float32)
    pool.place(job, [[a]] * N)
    for n_cols in (None, 1, 200, 2):
        x = rng.standard_normal(30 if n_cols is None else (30, n_cols))
        r = pool.run(job, "matvec", x, enough=everyone(N))
        for got in r.results.values():
            np.testing.assert_array_equal(got, compute("matvec", a, x))
            assert got.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmat_exact(pool, job, rng, dtype):
    pairs = [[(block(rng, 6, 8, dtype), block(rng, 8, 5, dtype))] for _ in range(N)]
    pairs[1].append((block(rng, 3, 8, dtype), block(rng, 8, 5, dtype, density=1.0).toarray()))
    pool.place(job, pairs)
    r = pool.run(job, "matmat", None, enough=everyone(N + 1))
    assert len(r.results) == N + 1
    for (w, s), got in r.results.items():
        a, b = pairs[w][s]
        want = (a @ b).toarray() if sp.issparse(a @ b) else a @ b
        got = got.toarray() if sp.issparse(got) else got
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_jobs_coexist_and_drop(pool, rng):
    a, b = block(rng, 4, 6), block(rng, 3, 5)
    pool.place("first", [[a]] * N)
    pool.place("second", [[b]] * N)
    x, y = rng.standard_normal(6), rng.standard_normal(5)
    for _ in range(3):
        np.testing.assert_array_equal(
            pool.run("first", "matvec", x, enough=everyone(N)).results[(2, 0)],
            compute("matvec", a, x),
        )
        np.testing.assert_array_equal(
            pool.run("second", "matvec", y, enough=everyone(N)).results[(2, 0)],
            compute("matvec", b, y),
        )
    pool.place("second", [[a]] * N)  # replaced: new payloads under the same key
    np.testing.assert_array_equal(
        pool.run("second", "matvec", x, enough=everyone(N)).results[(1, 0)], compute("matvec", a, x)
    )
    before = our_segments() if LINUX else []
    first = {seg.name.lstrip("/") for seg in pool._jobs["first"].segments}
    pool.drop("first")
    pool.drop("first")  # dropping twice is harmless
    with pytest.raises(ValueError, match="job 'first' is not placed"):
        pool.run("first", "matvec", x, enough=everyone(N))
    if LINUX:
        assert len(our_segments()) == len(before) - N
        assert not first & set(our_segments())
    pool.drop("second")


# ----------------------------------------------------------------------------- heterogeneous


def test_partial_work_of_a_slow_device_counts(pool, job, rng):
    # worker 0 computes a tiny block, then a heavy one: the tiny result must be sent
    # before the heavy one is computed, and count on its own
    n, m = 2000, 768  # heavy enough for the AVX-512 kernel too
    tiny = [block(rng, 5, n) for _ in range(N)]
    heavy = block(rng, 2000, n, density=0.2)
    pool.place(job, [[tiny[0], heavy]] + [[t] for t in tiny[1:]])
    x = rng.standard_normal((n, m))
    pool.run(job, "matvec", x, enough=everyone(N + 1))  # warm: every worker is up

    r = pool.run(job, "matvec", x, enough=everyone(N + 1))
    arrival, secs = r.extra["arrival"], r.compute_seconds
    assert secs[(0, 1)] > 0.05, "the heavy block is too light to tell anything"
    # sent as soon as done: the tiny result arrived a heavy computation earlier
    assert arrival[(0, 1)] - arrival[(0, 0)] > 0.5 * secs[(0, 1)]
    _want = heavy @ x
    np.testing.assert_allclose(
        r.results[(0, 1)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
    )

    firsts = {(w, 0) for w in range(N)}
    r = pool.run(job, "matvec", x, enough=lambda res: firsts <= res.keys())
    assert set(r.results) == firsts
    assert r.cancelled == [0]
    assert 0 in r.answered
    _want = tiny[0] @ x
    np.testing.assert_allclose(
        r.results[(0, 0)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
    )


# ----------------------------------------------------------------------------- stragglers


def test_worker_stuck_in_long_work_is_skipped_then_rejoins(pool, job, rng):
    # worker 0 is busy in a kernel that cannot be interrupted; rounds go on without
    # it, and once it owes a few rounds it is not even sent new ones (its pipe
    # cannot fill up); when it is done it catches up at once and answers again
    n, m = 2000, 256
    heavy = block(rng, 2000, n, density=0.2)
    tiny = [block(rng, 5, n) for _ in range(N - 1)]
    pool.place(job, [[heavy]] + [[t] for t in tiny])
    x = rng.standard_normal((n, m))
    others = {(w, 0) for w in range(1, N)}
    pool.run(job, "matvec", x, enough=everyone(N))  # warm
    rounds = [pool.run(job, "matvec", x, enough=lambda res: others <= res.keys()) for _ in range(8)]
    skipped = [r.extra["skipped"] for r in rounds]
    assert [0] in skipped
    assert all(r.cancelled == [0] for r, sk in zip(rounds, skipped, strict=True) if sk)

    def rejoined():
        return not pool.run(job, "matvec", x, enough=everyone(1)).extra["skipped"]

    assert wait_until(rejoined, 10)
    r = pool.run(job, "matvec", x, enough=everyone(N))
    _want = heavy @ x
    np.testing.assert_allclose(
        r.results[(0, 0)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
    )


def test_delayed_workers_are_cancelled_and_leave_no_stale_answer(pool, job, rng):
    blocks = [block(rng, 6, 7) for _ in range(N)]
    pool.place(job, [[b] for b in blocks])
    x = rng.standard_normal(7)
    pool.run(job, "matvec", x, enough=everyone(N))  # warm
    actions = [Action(delay=2.0), Action(delay=2.0), Action(), Action()]
    t0 = time.perf_counter()
    r = pool.run(
        job, "matvec", x, enough=lambda res: {(2, 0), (3, 0)} <= res.keys(), actions=actions
    )
    assert time.perf_counter() - t0 < 1.0
    assert r.cancelled == [0, 1]
    assert sorted(r.results) == [(2, 0), (3, 0)]
    # the cancelled workers stop sleeping at once: a round needing everyone is quick,
    # and every answer is for the new operand, none left over from the last round
    for _ in range(3):
        y = rng.standard_normal(7)
        t0 = time.perf_counter()
        r = pool.run(job, "matvec", y, enough=everyone(N))
        assert time.perf_counter() - t0 < 1.0
        for w in range(N):
            np.testing.assert_array_equal(r.results[(w, 0)], compute("matvec", blocks[w], y))


def test_crash_mid_round_then_respawn(pool, job, rng):
    blocks = [block(rng, 6, 7) for _ in range(N)]
    pool.place(job, [[b] for b in blocks])
    x = rng.standard_normal(7)
    pids = pool.pids
    # the survivors wait a little, so the deaths are seen before the round is decided
    actions = [Action(crash=True), Action(delay=0.3), Action(crash=True), Action(delay=0.3)]
    r = pool.run(job, "matvec", x, enough=everyone(2), actions=actions)
    assert r.dead == [0, 2]
    assert sorted(r.results) == [(1, 0), (3, 0)]
    for w in (1, 3):
        np.testing.assert_array_equal(r.results[(w, 0)], compute("matvec", blocks[w], x))
    assert wait_until(lambda: gone(pids[0]) and gone(pids[2]), 5)
    # respawned, payloads placed again: everyone answers the next round
    new = pool.pids
    assert [new[w] == pids[w] for w in range(N)] == [False, True, False, True]
    r = pool.run(job, "matvec", x, enough=everyone(N))
    assert r.dead == []
    assert sorted(r.answered) == list(range(N))
    for w in range(N):
        np.testing.assert_array_equal(r.results[(w, 0)], compute("matvec", blocks[w], x))


def test_too_many_dead_raises_quickly_naming_them(pool, job, rng):
    pool.place(job, [[block(rng, 3, 4)] for _ in range(N)])
    x = rng.standard_normal(4)
    actions = [Action(crash=True)] * 3 + [Action()]
    t0 = time.perf_counter()
    with pytest.raises(NotEnoughWorkers, match=r"1 of 4 workers answered") as info:
        pool.run(job, "matvec", x, enough=everyone(2), actions=actions, timeout=30)
    assert time.perf_counter() - t0 < 10  # no wait for the timeout
    assert "dead workers: [0, 1, 2] (exit codes [-9, -9, -9];" in str(info.value)
    assert info.value.dead == [0, 1, 2]
    assert info.value.answered == [3]


def test_timeout_raises_and_cancels(pool, job, rng):
    pool.place(job, [[block(rng, 3, 4)] for _ in range(N)])
    x = rng.standard_normal(4)
    pool.run(job, "matvec", x, enough=everyone(N))  # warm: respawned workers are up
    t0 = time.perf_counter()
    with pytest.raises(RoundTimeout, match=r"timed out after 0.3 s; 2 of 4 workers answered"):
        pool.run(
            job, "matvec", x, enough=everyone(N), actions=[Action(delay=5.0)] * 2 + [Action()] * 2,
            timeout=0.3,
        )  # fmt: skip
    assert 0.3 <= time.perf_counter() - t0 < 2.0
    t0 = time.perf_counter()
    pool.run(job, "matvec", x, enough=everyone(N))  # the slow ones were cancelled
    assert time.perf_counter() - t0 < 1.0


def test_bad_payloads_are_refused_at_place(pool, job, rng):
    # checked once, when placed: never again per round
    with pytest.raises(ValueError, match=r"payloads\[2\]\[0\]\[1\] has 5 rows, expected .* = 4"):
        pool.place(
            job,
            [[(block(rng, 3, 4), block(rng, 4, 2))]] * 2
            + [[(block(rng, 3, 4), block(rng, 5, 2))]] * 2,
        )
    bad = block(rng, 3, 4)
    bad.indices[0] = 7  # a column index out of range
    with pytest.raises(IndexError, match=r"payloads\[1\]\[0\]: column index 7 .* < 4"):
        pool.place(job, [[block(rng, 3, 4)], [bad], [], []])
    assert job not in pool._jobs


def test_worker_exception_reaches_the_master(pool, job, rng):
    # a segment corrupted behind the pool's back: the kernel's own index check in the
    # worker raises, and the master re-raises it with the worker's traceback
    a = block(rng, 3, 4)
    pool.place(job, [[a]] * N)
    record = pool._jobs[job]
    off, dt, shape = record.place_msgs[2][3][1]  # worker 2's payload: data, indices, indptr
    np.ndarray(shape, dt, buffer=record.segments[2].buf, offset=off)[0] = 99
    with pytest.raises(IndexError) as info:
        pool.run(job, "matvec", np.ones(4), enough=everyone(N))
    assert f"in LocalPool worker 2, payload 0 of job {job!r}" in "".join(info.value.__notes__)
    assert not re.search(r"round \d", "".join(info.value.__notes__).split(";")[0])


def test_job_missing_on_a_worker_is_named_in_the_error(pool, job, rng):
    from sparsecoded.pools.local import _protocol

    a = block(rng, 3, 4)
    pool.place(job, [[a]] * N)
    # worker 1 loses the job behind the pool's back (as a lost place message would)
    pool._res.conns[1].send_bytes(_protocol.dumps((_protocol.M_DROP, pool._jobs[job].id)))
    with pytest.raises(RuntimeError, match="the job is not placed on worker 1") as info:
        pool.run(job, "matvec", np.ones(4), enough=everyone(N))
    assert f"worker 1, the round set-up of job {job!r}" in "".join(info.value.__notes__)
    pool.place(job, [[a]] * N)  # placed again, it works
    assert sorted(pool.run(job, "matvec", np.ones(4), enough=everyone(N)).answered) == [0, 1, 2, 3]


def test_exception_in_enough_keeps_the_pool(pool, job, rng):
    a = block(rng, 3, 4)
    pool.place(job, [[a]] * N)
    x = rng.standard_normal(4)

    def broken(results):
        raise ZeroDivisionError("decoder bug")

    with pytest.raises(ZeroDivisionError, match="decoder bug"):
        pool.run(job, "matvec", x, enough=broken)
    r = pool.run(job, "matvec", x, enough=everyone(N))
    np.testing.assert_array_equal(r.results[(3, 0)], compute("matvec", a, x))


@needs_linux
def test_worker_killed_between_rounds_is_respawned(pool, job, rng):
    a = block(rng, 3, 4)
    pool.place(job, [[a]] * N)
    x = rng.standard_normal(4)
    pid = pool.pids[1]
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: gone(pid), 5)
    r = pool.run(job, "matvec", x, enough=everyone(N))
    assert r.extra["died_between_rounds"] == [1]
    assert r.dead == []
    np.testing.assert_array_equal(r.results[(1, 0)], compute("matvec", a, x))


def test_respawned_worker_survives_its_result_area_growing_before_it_starts(rng):
    # Worker 1 dies in round 1 and is respawned at once with the name of its current
    # result area; round 2 (wider operand) grows and frees that area long before the
    # new process has imported numpy and mapped it.  It must still answer round 2.
    blocks = [block(rng, 30, 40) for _ in range(2)]
    with LocalPool(2, timeout=30) as pool:
        pool.place("j", [[b] for b in blocks])
        r = pool.run(
            "j", "matvec", np.ones(40), enough=everyone(1), actions=[Action(), Action(crash=True)]
        )
        assert r.dead == [1]
        for n_cols in (100, 300):  # round 3 grows the area again, under the new worker
            x = rng.standard_normal((40, n_cols))
            r = pool.run("j", "matvec", x, enough=everyone(2))
            assert r.dead == []
            assert r.extra["died_between_rounds"] == []
            for w in range(2):
                np.testing.assert_array_equal(r.results[(w, 0)], compute("matvec", blocks[w], x))


@needs_linux
@pytest.mark.parametrize("interrupt", [OSError(24, "Too many open files"), KeyboardInterrupt()])
def test_failed_place_keeps_the_old_job_and_frees_what_it_built(pool, job, rng, interrupt):
    blocks = [block(rng, 3, 4) for _ in range(N)]
    pool.place(job, [[b] for b in blocks])
    before = our_segments()
    new_segment = pool._res.new_segment
    calls = []

    def flaky(size):
        calls.append(size)
        if len(calls) == 2:  # the segment of worker 1
            raise interrupt
        return new_segment(size)

    pool._res.new_segment = flaky
    try:
        with pytest.raises(type(interrupt)):
            pool.place(job, [[2 * b] for b in blocks])
        calls.clear()
        with pytest.raises(type(interrupt)):
            pool.place(job + "-new", [[b] for b in blocks])
    finally:
        del pool._res.new_segment
    assert our_segments() == before
    with pytest.raises(ValueError, match=r"job '.*-new' is not placed"):
        pool.run(job + "-new", "matvec", np.ones(4), enough=everyone(N))
    # the old job is whole, on every worker
    x = rng.standard_normal(4)
    r = pool.run(job, "matvec", x, enough=everyone(N))
    for w in range(N):
        np.testing.assert_array_equal(r.results[(w, 0)], compute("matvec", blocks[w], x))


@needs_linux
def test_a_placed_segment_costs_the_master_one_descriptor(pool, job, rng):
    fds = open_fds()
    pool.place(job, [[block(rng, 3, 4)] for _ in range(N)])
    assert open_fds() - fds == N
    pool.drop(job)
    assert open_fds() == fds


# ----------------------------------------------------------------------------- resources


@needs_linux
def test_rounds_leak_neither_fds_nor_segments(pool, job, rng):
    a = block(rng, 4, 5)
    pool.place(job, [[a]] * N)
    x = rng.standard_normal(5)
    pool.run(job, "matvec", x, enough=everyone(N))
    fds, segments = open_fds(), our_segments()
    for i in range(1000):
        r = pool.run(job, "matvec", x, enough=everyone(N - 1 if i % 2 else N))
    assert open_fds() == fds
    assert our_segments() == segments
    # the last round needed N - 1 answers, so any worker may be the one missing
    for got in r.results.values():
        np.testing.assert_array_equal(got, compute("matvec", a, x))
    # a crash and its respawn do not leak either
    pool.run(
        job, "matvec", x, enough=everyone(N - 1), actions=[Action(crash=True)] + [Action()] * 3
    )
    pool.run(job, "matvec", x, enough=everyone(N))
    assert open_fds() == fds
    assert our_segments() == segments


@needs_linux
def test_close_leaves_no_process_and_no_segment(rng):
    before = set(our_segments())
    pool = LocalPool(2, timeout=30)
    pids = pool.pids
    pool.place("j", [[block(rng, 3, 4)], [block(rng, 3, 4)]])
    pool.run("j", "matvec", np.ones(4), enough=everyone(2))
    ours = set(our_segments()) - before
    assert len(ours) >= 5  # counter, operand, 2 result areas, 2 payloads
    pool.close()
    pool.close()  # idempotent
    assert all(gone(p) for p in pids)
    assert not ours & set(our_segments())


def test_closed_pool_raises(rng):
    with LocalPool(1, timeout=30) as pool:
        pool.place("j", [[block(rng, 2, 2)]])
    assert pool.closed
    with pytest.raises(PoolClosed, match="closed"):
        pool.run("j", "matvec", np.ones(2), enough=everyone(1))
    with pytest.raises(PoolClosed):
        pool.place("j", [[block(rng, 2, 2)]])
    with pytest.raises(PoolClosed):
        pool.drop("j")
    with pytest.raises(PoolClosed), pool:
        pass


@needs_linux
def test_keyboard_interrupt_during_a_round_leaves_nothing(rng):
    before = set(our_segments())
    pool = LocalPool(2, timeout=30)
    pids = pool.pids
    pool.place("j", [[block(rng, 3, 4)], [block(rng, 3, 4)]])
    ours = set(our_segments()) - before

    def interrupted(results):
        raise KeyboardInterrupt

    # no ``with``: the round itself must clean up, the worker 1 still sleeping
    with pytest.raises(KeyboardInterrupt):
        pool.run(
            "j", "matvec", np.ones(4), enough=interrupted, actions=[Action(), Action(delay=30)]
        )
    assert pool.closed
    assert wait_until(lambda: all(gone(p) for p in pids), 5)
    assert not ours & set(our_segments())
    with pytest.raises(PoolClosed, match="KeyboardInterrupt"):
        pool.run("j", "matvec", np.ones(4), enough=everyone(2))


@needs_linux
def test_close_interrupted_while_joining_is_finished_by_the_next_close(rng):
    before = set(our_segments())
    pool = LocalPool(2, timeout=30)
    pids = pool.pids
    pool.place("j", [[block(rng, 3, 4)], [block(rng, 3, 4)]])
    ours = set(our_segments()) - before

    def interrupted(proc, grace):  # a second Ctrl-C during the join
        raise KeyboardInterrupt

    pool._res.stop_process = interrupted
    with pytest.raises(KeyboardInterrupt):
        pool.close()
    del pool._res.stop_process
    assert pool.closed
    assert not ours & set(our_segments())  # unlinked before anything could be interrupted
    with pytest.raises(PoolClosed, match="close"):
        pool.run("j", "matvec", np.ones(4), enough=everyone(2))
    pool.close()
    assert all(gone(p) for p in pids)
    pool.close()  # still idempotent


_SCRIPT = textwrap.dedent(
    """
    import numpy as np, scipy.sparse as sp
    from sparsecoded.pools.local.pool import LocalPool
    from sparsecoded.stragglers import Action

    if __name__ == "__main__":
        pool = LocalPool(2, timeout=60)
        pool.place("j", [[sp.identity(3, format="csr")]] * 2)
        print(*pool.pids, flush=True)
        pool.run("j", "matvec", np.ones(3), enough=lambda r: False, actions=[Action(delay=60)] * 2)
    """
)


@pytest.mark.slow
@needs_linux
@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_master_stopped_from_outside_leaves_nothing(tmp_path, how):
    script = tmp_path / "master.py"
    script.write_text(_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal would give it
    )
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2, proc.stderr.read()
        assert wait_until(lambda: len(our_segments(proc.pid)) >= 5, 10)
        time.sleep(0.3)  # inside the round
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            proc.kill()
        proc.wait(20)
        stderr = proc.stderr.read()
        assert wait_until(lambda: all(gone(p) for p in pids), 10)
        assert wait_until(lambda: not our_segments(proc.pid), 10)
        if how == "ctrl-c":
            assert "KeyboardInterrupt" in stderr
            assert "leaked" not in stderr  # the master cleaned up, not the resource tracker
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# ----------------------------------------------------------------------------- bad input


def test_bad_input(pool, job, rng):
    a = block(rng, 3, 4)
    with pytest.raises(ValueError, match="payloads has 3 entries, expected n_workers = 4"):
        pool.place(job, [[a]] * 3)
    with pytest.raises(TypeError, match=r"payloads\[1\] is a csr_array, expected a list"):
        pool.place(job, [[a], a, [a], [a]])
    with pytest.raises(TypeError, match=r"payloads\[0\]\[0\] is a str"):
        pool.place(job, [["block"], [a], [a], [a]])
    pool.place(job, [[a]] * N)
    x = np.ones(4)
    with pytest.raises(ValueError, match=r"unknown op 'matmul', expected one of \('matvec'"):
        pool.run(job, "matmul", x, enough=everyone(N))
    with pytest.raises(ValueError, match="operand has dtype int64, expected float32 or float64"):
        pool.run(job, "matvec", np.ones(4, dtype=np.int64), enough=everyone(N))
    with pytest.raises(ValueError, match="operand has dtype complex128"):
        pool.run(job, "matvec", np.ones(4, dtype=complex), enough=everyone(N))
    with pytest.raises(ValueError, match=r"operand has 5 rows, expected 4"):
        pool.run(job, "matvec", np.ones(5), enough=everyone(N))
    with pytest.raises(ValueError, match="operand has 3 dimensions, expected 1"):
        pool.run(job, "matvec", np.ones((4, 1, 1)), enough=everyone(N))
    with pytest.raises(ValueError, match="needs an operand"):
        pool.run(job, "matvec", None, enough=everyone(N))
    with pytest.raises(ValueError, match=r"op 'matmat' needs a pair .* found a matrix"):
        pool.run(job, "matmat", None, enough=everyone(N))
    with pytest.raises(ValueError, match="actions has 2 entries, expected n_workers = 4"):
        pool.run(job, "matvec", x, enough=everyone(N), actions=[Action()] * 2)
    with pytest.raises(
        ValueError, match=r"timeout must be > 0 seconds \(inf means no limit\), got 0"
    ):
        pool.run(job, "matvec", x, enough=everyone(N), timeout=0)
    with pytest.raises(ValueError, match="timeout must be > 0 seconds .*, got nan"):
        pool.run(job, "matvec", x, enough=everyone(N), timeout=float("nan"))
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0 .*, got str '5'"):
        pool.run(job, "matvec", x, enough=everyone(N), timeout="5")
    with pytest.raises(ValueError, match="job 'nope' is not placed"):
        pool.run("nope", "matvec", x, enough=everyone(N))
    # nothing above broke the pool
    np.testing.assert_array_equal(
        pool.run(job, "matvec", x, enough=everyone(N)).results[(0, 0)], compute("matvec", a, x)
    )


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="n_workers must be >= 1, got 0"):
        LocalPool(0)
    with pytest.raises(TypeError, match="n_workers must be an int, got float"):
        LocalPool(2.0)
    with pytest.raises(
        ValueError, match=r"timeout must be > 0 seconds \(inf means no limit\), got -1"
    ):
        LocalPool(1, timeout=-1)
    with pytest.raises(ValueError, match="timeout must be > 0 seconds .*, got nan"):
        LocalPool(1, timeout=float("nan"))
    with pytest.raises(
        ValueError, match="timeout must be a number of seconds > 0 .*, got bool True"
    ):
        LocalPool(1, timeout=True)


def test_an_infinite_or_huge_timeout_means_no_limit(pool, job, rng):
    a = block(rng, 3, 4)
    pool.place(job, [[a]] * N)
    x = rng.standard_normal(4)
    for timeout in (float("inf"), 3e6, 1e300):
        r = pool.run(job, "matvec", x, enough=everyone(N), timeout=timeout)
        assert r.dead == []
        assert sorted(r.answered) == list(range(N))
        np.testing.assert_array_equal(r.results[(0, 0)], compute("matvec", a, x))
    with LocalPool(1, timeout=float("inf")) as one:
        assert one.timeout == float("inf")
        one.place("j", [[a]])
        # a round that cannot decide still ends when every worker has answered
        with pytest.raises(NotEnoughWorkers, match="1 of 1 workers answered"):
            one.run("j", "matvec", x, enough=lambda r: False)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("-inf"), "5", None, True])
def test_every_backend_checks_timeout_alike(bad):
    from sparsecoded.pools.base import check_timeout
    from sparsecoded.pools.inline import InlinePool

    with pytest.raises(ValueError, match="timeout must be") as info:
        check_timeout(bad)
    with pytest.raises(ValueError, match=re.escape(str(info.value))):
        InlinePool(2, timeout=bad)
    pool = InlinePool(1)
    pool.place("j", [[sp.identity(2, format="csr")]])
    if bad is not None:  # run(timeout=None) is the pool's default
        with pytest.raises(ValueError, match=re.escape(str(info.value))):
            pool.run("j", "matvec", np.ones(2), enough=everyone(1), timeout=bad)
    assert check_timeout(2) == 2.0
    assert check_timeout(np.float32(0.5)) == 0.5
    assert pool.run("j", "matvec", np.ones(2), enough=everyone(1), timeout=float("inf")).results


# ----------------------------------------------------------------------------- lifecycles


def _run_script(tmp_path, text, timeout=120):
    script = tmp_path / "use.py"
    script.write_text(textwrap.dedent(text))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@needs_linux
def test_a_script_without_a_main_guard_works(tmp_path):
    # spawn would re-run this file in every worker (and fail, or start pools of pools):
    # the workers must import sparsecoded only
    out = _run_script(
        tmp_path,
        """
        import os
        import numpy as np, scipy.sparse as sp
        from sparsecoded import CodedMatVec, LocalPool, design_mv

        print("main ran in", os.getpid(), flush=True)
        A = sp.random_array((300, 120), density=0.05, format="csr", rng=0)
        x = np.random.default_rng(1).standard_normal(120)
        with LocalPool(4) as pool:
            pids = pool.pids
            op = CodedMatVec(A, design_mv(n_workers=4, k=3, seed=0), pool)
            y = op @ x
        print("pids", *pids)
        print("error", np.abs(y - A @ x).max() / np.abs(A @ x).max())
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    assert len([ln for ln in lines if ln.startswith("main ran in")]) == 1, out.stdout
    master = int(lines[0].split()[-1])
    pids = [int(p) for p in next(ln for ln in lines if ln.startswith("pids")).split()[1:]]
    assert len(pids) == 4
    assert master not in pids
    assert float(next(ln for ln in lines if ln.startswith("error")).split()[1]) < 1e-12
    assert not our_segments(master)
    assert wait_until(lambda: all(gone(p) for p in pids), 10)


@pytest.mark.slow
@needs_linux
def test_close_right_after_a_crash_prints_nothing(tmp_path):
    # the respawned worker starts while close() unlinks its segments: a quiet exit
    out = _run_script(
        tmp_path,
        """
        import os
        import numpy as np, scipy.sparse as sp
        from sparsecoded.pools.local.pool import LocalPool
        from sparsecoded.stragglers import Action

        print(os.getpid(), flush=True)
        for delay in (0.0, 0.05, 0.3):
            pool = LocalPool(2, timeout=60)
            pool.place("j", [[sp.identity(3, format="csr")]] * 2)
            r = pool.run("j", "matvec", np.ones(3), enough=lambda r: len(r) >= 1,
                         actions=[Action(), Action(crash=True)])
            assert r.dead == [1], r
            __import__("time").sleep(delay)
            pool.close()
        __import__("time").sleep(1.0)  # a late worker would print by now
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert not our_segments(int(out.stdout.split()[0]))


@needs_linux
def test_drop_frees_every_segment_the_job_grew(rng):
    def usage():
        return sorted(os.stat(f"/dev/shm/{name}").st_size for name in our_segments())

    with LocalPool(2, timeout=30) as pool:
        before = usage()
        a = block(rng, 300, 50)
        pool.place("big", [[a], [a, a]])
        x = rng.standard_normal((50, 64))  # grows the operand and both result areas
        r = pool.run("big", "matvec", x, enough=everyone(3))
        _want = a @ x
        np.testing.assert_allclose(
            r.results[(1, 1)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
        )
        assert sum(usage()) > sum(before) + 300 * 64 * 8
        pool.drop("big")
        assert usage() == before
        pool.place("big", [[a], [a]])  # and the pool still works after it shrank
        r = pool.run("big", "matvec", x, enough=everyone(2))
        _want = a @ x
        np.testing.assert_allclose(
            r.results[(0, 0)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
        )


def test_deaths_and_respawns_are_logged(pool, job, rng, caplog):
    import logging

    pool.place(job, [[block(rng, 3, 4)] for _ in range(N)])
    with caplog.at_level(logging.INFO, logger="sparsecoded"):
        pool.run(
            job, "matvec", np.ones(4), enough=everyone(N - 1),
            actions=[Action()] * 3 + [Action(crash=True)],
        )  # fmt: skip
    records = [r for r in caplog.records if r.name.startswith("sparsecoded.pools.local")]
    text = [r.getMessage() for r in records]
    assert all(r.levelno == logging.INFO for r in records)
    assert any("worker 3 died" in t for t in text), text
    assert any("worker 3 respawned" in t and "re-placing 1 jobs" in t for t in text), text


def test_round_failures_name_no_round_number(pool, job, rng):
    pool.place(job, [[block(rng, 3, 4)] for _ in range(N)])
    with pytest.raises(NotEnoughWorkers) as info:
        pool.run(job, "matvec", np.ones(4), enough=lambda r: False)
    assert not isinstance(info.value, RoundTimeout)
    assert not re.search(r"round \d", str(info.value))
    with pytest.raises(RoundTimeout) as info:
        pool.run(
            job, "matvec", np.ones(4), enough=lambda r: False, actions=[Action(delay=5)] * N,
            timeout=0.2,
        )  # fmt: skip
    assert isinstance(info.value, TimeoutError)
    assert not re.search(r"round \d", str(info.value))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_threads_per_worker_is_checked(bad):
    with pytest.raises(ValueError, match="threads_per_worker must be"):
        LocalPool(1, threads_per_worker=bad)


def test_threads_per_worker_reaches_the_kernels(rng):
    a = block(rng, 500, 300)
    x = rng.standard_normal((300, 8))
    with LocalPool(1, timeout=30, threads_per_worker=2) as pool:
        assert pool.threads_per_worker == 2
        pool.place("j", [[a]])
        r = pool.run("j", "matvec", x, enough=everyone(1))
    _want = a @ x
    np.testing.assert_allclose(
        r.results[(0, 0)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
    )


def test_pairs_sharing_a_factor_store_it_once(pool, job, rng):
    # a finer-partition MM device multiplies each A-slot with each B-slot
    a = block(rng, 300, 200)
    bs = [block(rng, 200, 50) for _ in range(4)]
    shared = [[(a, b) for b in bs]] + [[] for _ in range(N - 1)]
    pool.place(job, shared)
    once = pool._jobs[job].segments[0].size
    copies = [[(a.copy(), b) for b in bs]] + [[] for _ in range(N - 1)]
    pool.place(job, copies)
    assert pool._jobs[job].segments[0].size > once + 2 * a.data.nbytes
    r = pool.run(job, "matmat", None, enough=everyone(4))
    for q, b in enumerate(bs):
        got = r.results[(0, q)]
        got = got.toarray() if sp.issparse(got) else got
        want = (a @ b).toarray()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    pool.place(job, shared)  # and the shared layout computes the same
    r = pool.run(job, "matmat", None, enough=everyone(4))
    got = r.results[(0, 3)]
    got = got.toarray() if sp.issparse(got) else got
    want = (a @ bs[3]).toarray()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
