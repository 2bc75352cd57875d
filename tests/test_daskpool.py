"""DaskPool on a LocalCluster: exact rounds, cancelled stragglers, crashes and restarts.

One cluster serves the whole module (worker processes take seconds to start on
a shared 2-core machine); every test starts from all workers alive.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.sparse as sp

from sparsecoded import kernels
from sparsecoded.errors import NotEnoughWorkers, PoolClosed, RoundTimeout
from sparsecoded.pools.base import compute
from sparsecoded.stragglers import Action, Crash, FixedDelay

distributed = pytest.importorskip("distributed")

N, K = 6, 4  # s = 2 stragglers tolerated


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=N,
            threads_per_worker=1,
            processes=True,
            # the scheduler's HTTP server starts anyway; 8787 may be taken on a shared machine
            dashboard_address="127.0.0.1:0",
            # a killed worker must come back; the default already restarts, say it anyway
            worker_class=distributed.Nanny,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def pool(client, request):
    from sparsecoded import DaskPool

    mode = getattr(request, "param", "tasks")

    _all_back(client)
    p = DaskPool(client, timeout=20, mode=mode)
    assert p.names == list(range(N))
    yield p
    p.close()


def _coded(rng, dtype, m=37, c=23):
    A = sp.random_array((m, c), density=0.2, format="csr", rng=rng, dtype=dtype)
    E = rng.standard_normal((N, K)).astype(dtype)
    return A, E, kernels.encode_row_blocks(A, E)


def _any_k(results):
    return len({w for w, _ in results}) >= K


def _decode(E, rr, m):
    ws = sorted({w for w, _ in rr.results})[:K]
    Y = np.stack([rr.results[(w, 0)] for w in ws]).astype(np.float64)
    Z = np.linalg.solve(E[ws].astype(np.float64), Y.reshape(K, -1))
    return Z.reshape((-1, *Y.shape[2:]))[:m]


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-9), (np.float32, 2e-3)])
@pytest.mark.parametrize("operand", ["vector", "matrix"])
@pytest.mark.parametrize("pool", ["tasks", "actors"], indirect=True)
def test_matvec_exact_against_scipy(pool, rng, dtype, rtol, operand):
    A, E, blocks = _coded(rng, dtype)
    shape = (A.shape[1],) if operand == "vector" else (A.shape[1], 3)
    x = rng.standard_normal(shape).astype(dtype)
    pool.place("A", [[b] for b in blocks])
    for _ in range(3):  # the placed blocks serve many rounds
        rr = pool.run("A", "matvec", x, enough=_any_k)
        assert len(rr.answered) >= K
        for w, j in rr.order:
            assert j == 0
            assert rr.results[(w, j)].dtype == dtype
            # the pool moves what the worker computed unchanged (scipy is the kernels' oracle)
            np.testing.assert_array_equal(rr.results[(w, j)], compute("matvec", blocks[w], x))
        np.testing.assert_allclose(_decode(E, rr, A.shape[0]), A @ x, rtol=rtol, atol=rtol)
        assert set(rr.compute_seconds) == set(rr.results)
        x = 2 * x


@pytest.mark.parametrize("pool", ["tasks", "actors"], indirect=True)
def test_large_operand_is_scattered_and_exact(pool, rng):
    A, E, blocks = _coded(rng, np.float64, m=40, c=3000)
    pool.inline_bytes = 1024  # force the scatter path with a small x
    x = rng.standard_normal(A.shape[1])
    pool.place("A", [[b] for b in blocks])
    rr = pool.run("A", "matvec", x, enough=lambda r: len(r) == N)
    for w in range(N):
        _want = blocks[w] @ x
        np.testing.assert_allclose(
            rr.results[(w, 0)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
        )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matmat_exact_against_scipy(pool, rng, dtype):
    A = sp.random_array((30, 20), density=0.2, format="csr", rng=rng, dtype=dtype)
    B = sp.random_array((20, 12), density=0.2, format="csr", rng=rng, dtype=dtype)
    pairs = [(A[i * 5 : (i + 1) * 5], B[:, i * 2 : (i + 1) * 2]) for i in range(N)]
    pool.place("AB", [[p] for p in pairs])
    rr = pool.run("AB", "matmat", None, enough=lambda r: len(r) == N)
    for w, (a, b) in enumerate(pairs):
        got = rr.results[(w, 0)]
        got = got.toarray() if sp.issparse(got) else np.asarray(got)
        np.testing.assert_allclose(got, (a @ b).toarray(), rtol=1e-5)


@pytest.mark.parametrize("pool", ["tasks", "actors"], indirect=True)
def test_several_payloads_per_worker_arrive_one_by_one(pool, rng):
    # worker 0 is a device holding three coded blocks, the others one each
    A, E, blocks = _coded(rng, np.float64)
    payloads = [[blocks[0], 2 * blocks[0], 3 * blocks[0]], *[[b] for b in blocks[1:]]]
    x = rng.standard_normal(A.shape[1])
    pool.place("H", payloads)
    rr = pool.run("H", "matvec", x, enough=lambda r: len(r) == N + 2)
    assert set(rr.results) == {(0, 0), (0, 1), (0, 2)} | {(w, 0) for w in range(1, N)}
    # computed in slot order (each reply on its own connection: they may overtake each other)
    done = rr.extra["finished_at"]
    assert done[(0, 0)] <= done[(0, 1)] <= done[(0, 2)]
    for j in range(3):
        _want = (j + 1) * (blocks[0] @ x)
        np.testing.assert_allclose(
            rr.results[(0, j)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
        )


@pytest.mark.parametrize("pool", ["tasks", "actors"], indirect=True)
def test_delayed_workers_are_cancelled_and_the_round_is_fast(pool, rng):
    A, E, blocks = _coded(rng, np.float64)
    x = rng.standard_normal(A.shape[1])
    pool.place("A", [[b] for b in blocks])
    pool.run("A", "matvec", x, enough=_any_k)  # warm up
    slow = [1, 4]
    # The issue asks for "2 s delays, round under 1 s".  This machine is shared
    # (load averages of 5-10 were seen) and a plain round has taken 0.5-1.5 s
    # under that load, so the delay is 6 s and the bound 3 s: still far below
    # what waiting for a straggler would cost.
    delay, bound = 6.0, 3.0
    actions = FixedDelay(workers=slow, seconds=delay).plan(N, 0)
    t0 = time.perf_counter()
    rr = pool.run("A", "matvec", x, enough=_any_k, actions=actions)
    took = time.perf_counter() - t0
    assert took < bound, f"the round waited for its stragglers ({took:.2f} s)"
    assert set(rr.answered).isdisjoint(slow)
    assert set(rr.cancelled) == set(slow)
    np.testing.assert_allclose(_decode(E, rr, A.shape[0]), A @ x, rtol=1e-9)
    # the injected sleeps were interrupted: a round needing everybody is fast again
    t0 = time.perf_counter()
    rr = pool.run("A", "matvec", x, enough=lambda r: len(r) == N)
    took = time.perf_counter() - t0
    assert took < bound, f"cancelled delays kept the workers busy ({took:.2f} s)"
    assert sorted(rr.answered) == list(range(N))


def test_uncoded_round_waits_for_its_straggler(pool, rng):
    A, E, blocks = _coded(rng, np.float64)
    x = rng.standard_normal(A.shape[1])
    pool.place("A", [[b] for b in blocks])
    actions = FixedDelay(workers=[2], seconds=0.6).plan(N, 0)
    t0 = time.perf_counter()
    rr = pool.run("A", "matvec", x, enough=lambda r: len(r) == N, actions=actions)
    assert time.perf_counter() - t0 >= 0.6
    assert rr.order[-1] == (2, 0)


@pytest.mark.parametrize("pool", ["tasks", "actors"], indirect=True)
def test_crashed_worker_round_completes_and_worker_returns(pool, rng, caplog):
    A, E, blocks = _coded(rng, np.float64)
    x = rng.standard_normal(A.shape[1])
    pool.place("A", [[b] for b in blocks])
    old = pool.client.sync(pool._identity)[pool.names[3]]
    actions = Crash(workers=[3]).plan(N, 0)
    rr = pool.run("A", "matvec", x, enough=_any_k, actions=actions)
    assert 3 not in rr.answered
    np.testing.assert_allclose(_decode(E, rr, A.shape[0]), A @ x, rtol=1e-9)
    # the nanny restarts it under the same name at a new address; the pool re-places block 3
    # (the round may have ended before the scheduler saw the death: wait for the new process)
    _until(lambda: pool.client.sync(pool._identity).get(3) not in (None, old), timeout=150)
    with caplog.at_level(logging.INFO, logger="sparsecoded"):
        pool.wait_for_workers(timeout=60)
    rr = pool.run("A", "matvec", x, enough=lambda r: len(r) == N)
    assert sorted(rr.answered) == list(range(N))
    _want = blocks[3] @ x
    np.testing.assert_allclose(
        rr.results[(3, 0)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
    )
    text = [r.getMessage() for r in caplog.records if r.name == "sparsecoded.pools.dask"]
    assert any("re-placed a job's payloads on worker 3" in t for t in text), text


@pytest.mark.parametrize("pool", ["tasks", "actors"], indirect=True)
def test_too_many_dead_raises_quickly_naming_them(pool, rng):
    A, E, blocks = _coded(rng, np.float64)
    x = rng.standard_normal(A.shape[1])
    pool.place("A", [[b] for b in blocks])
    dead = [0, 2, 5]  # s + 1
    actions = Crash(workers=dead).plan(N, 0)
    t0 = time.perf_counter()
    with pytest.raises(NotEnoughWorkers, match=r"dead workers: \[0, 2, 5\]") as info:
        pool.run("A", "matvec", x, enough=_any_k, actions=actions, timeout=15)
    assert time.perf_counter() - t0 < 10, "should fail as soon as the deaths are seen"
    assert info.value.dead == dead
    assert sorted(info.value.answered) == [1, 3, 4]


@pytest.mark.parametrize("pool", ["tasks", "actors"], indirect=True)
def test_timeout_raises_not_enough_workers(pool, rng):
    A, E, blocks = _coded(rng, np.float64)
    x = rng.standard_normal(A.shape[1])
    pool.place("A", [[b] for b in blocks])
    actions = [Action(delay=30.0)] * N
    t0 = time.perf_counter()
    with pytest.raises(RoundTimeout, match=r"timed out after 0.5 s.*still busy: \[0, 1, 2"):
        pool.run("A", "matvec", x, enough=_any_k, actions=actions, timeout=0.5)
    assert time.perf_counter() - t0 < 5
    rr = pool.run("A", "matvec", x, enough=lambda r: len(r) == N, timeout=5)  # delays woken
    assert sorted(rr.answered) == list(range(N))


def _only_on(pool, workers, fake, real):
    """Call ``fake`` instead of ``real`` for calls aimed at one of the pool ``workers``."""

    def call(*args, **kw):
        targets = kw.get("workers") or []
        if any(
            t in {pool.names[w] for w in workers} | {pool._addr[w] for w in workers}
            for t in targets
        ):
            return fake(*args, **kw)
        return real(*args, **kw)

    return call


@pytest.mark.parametrize("pool", ["tasks", "actors"], indirect=True)
def test_a_worker_lost_while_placing_is_dead_for_the_round(pool, rng, monkeypatch):
    # the worker dies after the scatter: its data is gone and Dask cancels the
    # actor's (or the data's) future, a FutureCancelledError, not an OSError
    async def lost(*args, **kw):
        raise distributed.client.FutureCancelledError("k", reason="worker died")

    dying = set()
    if pool.mode == "actors":
        monkeypatch.setattr(
            pool.client, "submit", _only_on(pool, dying, lambda *a, **k: lost(), pool.client.submit)
        )
    else:
        monkeypatch.setattr(
            pool.client, "scatter", _only_on(pool, dying, lost, pool.client.scatter)
        )
    A, E, blocks = _coded(rng, np.float64)
    x = rng.standard_normal(A.shape[1])
    dying.update({1, 4})  # s of them: the round still decodes
    pool.place("A", [[b] for b in blocks])
    rr = pool.run("A", "matvec", x, enough=_any_k, timeout=15)
    assert {1, 4} <= set(rr.dead)
    assert set(rr.answered).isdisjoint({1, 4})
    np.testing.assert_allclose(_decode(E, rr, A.shape[0]), A @ x, rtol=1e-9)
    dying.add(2)  # s + 1: the round says which and why
    pool.place("B", [[b] for b in blocks])
    with pytest.raises(
        NotEnoughWorkers,
        match=r"dead workers: \[1, 2, 4\].*placement failed on \{1: 'FutureCancelledError",
    ):
        pool.run("B", "matvec", x, enough=_any_k, timeout=15)
    dying.clear()  # back: the next round places them again
    rr = pool.run("B", "matvec", x, enough=lambda r: len(r) == N, timeout=15)
    assert sorted(rr.answered) == list(range(N))


@pytest.mark.parametrize("pool", ["tasks", "actors"], indirect=True)
def test_slow_placement_does_not_outlast_the_round(pool, rng, monkeypatch):
    # a scatter to a worker that just left retries for the client's timeout (30 s)
    async def hangs(*args, **kw):
        await asyncio.sleep(30)
        raise OSError("No valid workers found")

    A, E, blocks = _coded(rng, np.float64)
    x = rng.standard_normal(A.shape[1])
    pool.place("A", [[b] for b in blocks])
    monkeypatch.setattr(pool.client, "scatter", _only_on(pool, [2], hangs, pool.client.scatter))

    async def unplace():
        pool._jobs["A"].release(2)  # as after a restart: worker 2 must be placed again

    pool.client.sync(unplace)
    t0 = time.perf_counter()
    rr = pool.run("A", "matvec", x, enough=_any_k, timeout=4)
    took = time.perf_counter() - t0
    assert took < 8, f"the round waited {took:.1f} s for a placement"
    assert 2 in rr.dead
    assert 2 not in rr.answered
    np.testing.assert_allclose(_decode(E, rr, A.shape[0]), A @ x, rtol=1e-9)
    monkeypatch.undo()
    rr = pool.run("A", "matvec", x, enough=lambda r: len(r) == N, timeout=15)
    assert sorted(rr.answered) == list(range(N))


def test_close_does_not_wait_for_a_hung_worker(pool, monkeypatch):
    from sparsecoded.pools.dask import pool as daskpool

    monkeypatch.setattr(daskpool, "_CLOSE_WAIT", 0.5)
    monkeypatch.setattr(pool.client, "run", lambda *a, **k: asyncio.sleep(30))
    t0 = time.perf_counter()
    pool.close()
    took = time.perf_counter() - t0
    assert took < 5, f"close() waited {took:.1f} s for a worker"


def test_bad_arguments(pool, rng):
    A, E, blocks = _coded(rng, np.float64)
    with pytest.raises(ValueError, match="payloads has 2 entries, expected n_workers = 6"):
        pool.place("A", [[blocks[0]], [blocks[1]]])
    pool.place("A", [[b] for b in blocks])
    x = np.ones(A.shape[1])
    with pytest.raises(ValueError, match="unknown op 'transpose'"):
        pool.run("A", "transpose", x, enough=_any_k)
    with pytest.raises(ValueError, match="actions has 1 entries, expected n_workers = 6"):
        pool.run("A", "matvec", x, enough=_any_k, actions=[Action()])
    with pytest.raises(ValueError, match="job .nope. is not placed"):
        pool.run("nope", "matvec", x, enough=_any_k)
    with pytest.raises(ValueError, match=r"workers \['ghost'\] are not in the cluster"):
        type(pool)(pool.client, workers=["ghost"])
    for bad, found in ((float("nan"), "nan"), (0, "0"), ("5", "str '5'")):
        with pytest.raises(ValueError, match=f"timeout must be .*, got {found}"):
            type(pool)(pool.client, timeout=bad)
        with pytest.raises(ValueError, match=f"timeout must be .*, got {found}"):
            pool.run("A", "matvec", x, enough=_any_k, timeout=bad)
    assert sorted(pool.run("A", "matvec", x, enough=_any_k, timeout=float("inf")).answered)
    # the operand is checked against the placed payloads before anything is sent
    with pytest.raises(ValueError, match=r"operand has 24 rows, expected 23 \(the columns of"):
        pool.run("A", "matvec", np.ones(A.shape[1] + 1), enough=_any_k)
    with pytest.raises(ValueError, match="operand has dtype int64, expected float32 or float64"):
        pool.run("A", "matvec", np.ones(A.shape[1], dtype=np.int64), enough=_any_k)
    with pytest.raises(ValueError, match=r"op 'matmat' needs a pair .* found a matrix"):
        pool.run("A", "matmat", None, enough=_any_k)
    with pytest.raises(TypeError, match=r"payloads\[0\]\[0\] is a str"):
        pool.place("bad", [["block"]] + [[b] for b in blocks[1:]])
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="threads_per_worker must be"):
            type(pool)(pool.client, threads_per_worker=bad)


def test_drop_and_close_release_the_data(client, rng):
    from sparsecoded import DaskPool

    A, E, blocks = _coded(rng, np.float64)
    _all_back(client)
    held = lambda: sum(len(v) for v in client.has_what().values())  # noqa: E731
    try:
        _until(lambda: held() == 0)  # what the pools of earlier tests placed is released
    except AssertionError:
        raise AssertionError(str(client.has_what())) from None
    before = held()
    pool = DaskPool(client)
    pool.place("A", [[b] for b in blocks])
    per_job = held() - before
    assert per_job >= N  # the N payloads (and, with actors, the N actors holding them)
    pool.place("B", [[b] for b in blocks])
    assert held() == before + 2 * per_job
    pool.drop("A")
    _until(lambda: held() == before + per_job)
    with pool:
        pass  # context manager closes
    _until(lambda: held() == before)
    with pytest.raises(PoolClosed):
        pool.run("B", "matvec", np.ones(A.shape[1]), enough=_any_k)
    pool.close()  # idempotent
    assert client.status == "running"  # the user's client is left alone


@pytest.mark.parametrize("pool", ["tasks", "actors"], indirect=True)
def test_threads_per_worker_reaches_the_kernels(pool, rng):
    A, E, blocks = _coded(rng, np.float64, m=400, c=300)
    two = type(pool)(pool.client, mode=pool.mode, threads_per_worker=2, timeout=20)
    try:
        assert two.threads_per_worker == 2
        two.place("A", [[b] for b in blocks])
        x = rng.standard_normal((A.shape[1], 4))
        rr = two.run("A", "matvec", x, enough=lambda r: len(r) == N)
        for w in range(N):
            ref = blocks[w] @ x  # summation orders differ: compare to the scale
            np.testing.assert_allclose(
                rr.results[(w, 0)], ref, rtol=1e-12, atol=1e-13 * abs(ref).max()
            )
    finally:
        two.close()


_QUIET = textwrap.dedent(
    """
    import numpy as np, scipy.sparse as sp, distributed
    from sparsecoded import DaskPool
    from sparsecoded.stragglers import Action

    if __name__ == "__main__":
        cluster = distributed.LocalCluster(
            n_workers=3, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        )
        client = distributed.Client(cluster)
        blocks = [sp.random_array((5, 4), density=0.5, rng=i, format="csr") for i in range(3)]
        x = np.arange(4.0)
        slow = [Action(), Action(delay=1.0), Action(delay=1.0)]  # their cancels race the drop
        for mode in ("actors", "tasks"):
            pool = DaskPool(client, mode=mode)
            for job in ("a", "b", "c"):
                pool.place(job, [[b] for b in blocks])
                r = pool.run(job, "matvec", x, enough=lambda r: len(r) >= 1, actions=slow)
                assert np.allclose(r.results[(0, 0)], blocks[0] @ x)
                pool.drop(job)
            pool.close()
        left_open = DaskPool(client)
        left_open.place("d", [[b] for b in blocks])
        left_open.run("d", "matvec", x, enough=lambda r: len(r) == 3)
        client.close()  # with the pool still open
        cluster.close()
        assert left_open.closed
        left_open.close()  # harmless
        print("ok", flush=True)
    """
)


@pytest.mark.slow
def test_jobs_come_and_go_and_the_client_closes_without_a_traceback(tmp_path):
    script = tmp_path / "quiet.py"
    script.write_text(_QUIET)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    for bad in ("Traceback", "CRITICAL", "KeyError", "ERROR"):
        assert bad not in out.stderr, out.stderr


def _all_back(client):
    # a previous test may have crashed some workers: wait for their nannies to
    # restart them (seconds each when idle; up to a minute was seen at load 18)
    _until(lambda: set(range(N)) <= set(_names(client)), timeout=150)


def _names(client):
    return client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.aliases))


def _until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
