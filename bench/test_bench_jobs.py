"""Job-level benchmarks: a coded ``A @ x`` round per scheme; decoding with and without the cache.

Run (timings on; the test suite itself runs with ``--benchmark-disable``)::

    pytest bench/test_bench_jobs.py --benchmark-enable --benchmark-group-by=group \
        --benchmark-columns=median,iqr,rounds

Every benchmark asserts that its result is right.  Rounds run on
:class:`~sparsecoded.LocalPool` (real processes, delays really slept) when the
pools are installed, and on :class:`~sparsecoded.pools.inline.InlinePool`
(products computed one after another in this process, delays on a simulated
clock: the benchmark then times the work of all workers plus the decode, and
``extra_info["simulated_round_seconds"]`` holds the round's simulated time).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("sparsecoded.design", reason="needs the design layer")

from sparsecoded import CodedMatVec, design_mv  # noqa: E402
from sparsecoded.decode import Decoder  # noqa: E402
from sparsecoded.pools.inline import InlinePool  # noqa: E402
from sparsecoded.stragglers import FixedDelay  # noqa: E402

N, K = 8, 6
DELAY = 0.25  # seconds: far above a round, so waiting for a straggler shows
M, C, DENSITY = 40_000, 20_000, 0.005

HAVE_LOCALPOOL = importlib.util.find_spec("sparsecoded.pools.local.pool") is not None
BACKENDS = [
    "inline",
    pytest.param("local", marks=pytest.mark.skipif(not HAVE_LOCALPOOL, reason="no LocalPool")),
]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(5)
    A = sp.random_array((M, C), density=DENSITY, format="csr", rng=rng)
    x = rng.standard_normal(C)
    return A, x, A @ x


def _pool(backend):
    if backend == "local":
        from sparsecoded import LocalPool

        return LocalPool(N)
    return InlinePool(N)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stragglers", [0, N - K], ids=["no-stragglers", "s-stragglers"])
@pytest.mark.parametrize("scheme", ["sparse", "mds", "uncoded"])
def test_mv_round(benchmark, problem, scheme, stragglers, backend):
    A, x, y_ref = problem
    benchmark.group = f"mv-round n={N} k={K} {backend} {stragglers} stragglers"
    code = design_mv(N, K, scheme, seed=0)
    model = FixedDelay(workers=list(range(stragglers)), seconds=DELAY) if stragglers else None
    with _pool(backend) as pool, CodedMatVec(A, code, pool, stragglers=model) as op:
        y = benchmark(op, x)
        rep = op.report
        benchmark.extra_info.update(
            weight=int(code.weight),
            mode=rep.mode,
            simulated_round_seconds=rep.round_seconds,
            decode_seconds=rep.decode_seconds,
            answered=rep.answered,
        )
    np.testing.assert_allclose(y, y_ref, rtol=1e-9, atol=1e-9 * np.abs(y_ref).max())
    if stragglers and scheme != "uncoded":
        assert not set(range(stragglers)) & set(rep.answered)  # never waited for
    if stragglers and scheme == "uncoded":
        assert rep.round_seconds >= DELAY  # the baseline does wait


@pytest.fixture(scope="module")
def decode_case():
    n, k = 20, 16
    code = design_mv(n, k, seed=0)
    rng = np.random.default_rng(6)
    responders = sorted(rng.choice(n, k, replace=False).tolist())
    Z = rng.standard_normal((k, 2000))  # the blocks A_j @ x, 2000 rows each
    Y = code.encoding.toarray()[responders] @ Z
    return code, responders, Z, Y


@pytest.mark.parametrize("cached", [False, True], ids=["uncached", "cached"])
def test_decode(benchmark, decode_case, cached):
    code, responders, Z, Y = decode_case
    benchmark.group = "decode n=20 k=16, 2000-row blocks"
    shared = Decoder(code.encoding)
    shared.plan(responders)

    def run():
        dec = shared if cached else Decoder(code.encoding)
        plan = dec.plan(responders)
        order = [responders.index(r) for r in plan.rows]
        return plan.solve(Y[order])

    out = benchmark(run)
    np.testing.assert_allclose(out, Z, rtol=1e-6, atol=1e-8)
