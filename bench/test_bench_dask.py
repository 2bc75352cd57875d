"""Per-round overhead of DaskPool at n = 8 on a LocalCluster (processes, 1 thread each).

Run:  pytest bench/test_bench_dask.py --benchmark-enable -p no:randomly

Each group times one round where all n workers must answer, in both modes,
with the default Dask configuration and with TUNED below, beside the serial
scipy baseline doing the same n products in the master.  The blocks are tiny,
so a round's time is the pool's overhead.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

N = 8

#: what helped or was tried (see the report in the module docstring of pools/dask/pool.py)
TUNED = {
    "distributed.worker.profile.enabled": False,  # no 10 ms sampling thread in every worker
    "distributed.scheduler.work-stealing": False,  # tasks are pinned anyway
    "distributed.admin.tick.interval": "1s",  # event-loop health ticks every 20 ms by default
    "distributed.admin.system-monitor.interval": "1s",
}


@pytest.fixture(scope="module", params=["default", "tuned"])
def client(request):
    with (
        dask.config.set(TUNED if request.param == "tuned" else {}),
        distributed.LocalCluster(
            n_workers=N, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    blocks = [sp.random_array((100, 100), density=0.05, format="csr", rng=rng) for _ in range(N)]
    return blocks, rng.standard_normal(100)


@pytest.mark.parametrize("mode", ["tasks", "actors"])
def test_round(benchmark, client, data, mode):
    from sparsecoded import DaskPool

    blocks, x = data
    benchmark.group = f"dask round n={N}"
    with DaskPool(client, mode=mode) as pool:
        pool.place("A", [[b] for b in blocks])
        for _ in range(3):
            pool.run("A", "matvec", x, enough=lambda r: len(r) == N)
        rr = benchmark.pedantic(
            pool.run,
            args=("A", "matvec", x),
            kwargs={"enough": lambda r: len(r) == N},
            rounds=50,
            iterations=1,
        )
    for w in range(N):
        np.testing.assert_allclose(rr.results[(w, 0)], blocks[w] @ x, rtol=1e-12)


def test_serial_baseline(benchmark, data):
    blocks, x = data
    benchmark.group = f"dask round n={N}"
    ys = benchmark(lambda: [b @ x for b in blocks])
    np.testing.assert_allclose(ys[0], blocks[0] @ x)
