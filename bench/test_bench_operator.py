r"""The coded operator in a training loop: forward and transpose rounds, one GD step (LocalPool).

Run::

    pytest bench/test_bench_operator.py --benchmark-enable \
        --benchmark-columns=min,median,mean,max,rounds

On a9a (32,561 x 123, from ``shared/data`` when present, else a random matrix
of the same shape and density) with n = 8 workers, k = 6 blocks:

- one forward round (``op @ w``) and one transpose round (``op.T @ r``) of the
  same job, beside scipy's in-process products (the baseline);
- one gradient-descent step of logistic regression (a forward and a transpose
  round) for the sparse code and for the uncoded one (k = 8), without
  stragglers and with workers 2 and 5 delayed by 10x a step's compute,
  measured interleaved (each repetition runs the four cases in turn) so the
  machine's load hits all of them alike; medians and spread go to
  ``benchmark.extra_info`` and, at full size, ``bench/results/gd-step.json``.

With benchmarks disabled (``pytest bench``) every case runs a few times on a
smaller matrix and checks its answer against scipy.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import time

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from sparsecoded import CodedMatVec, LocalPool, design_mv
from sparsecoded.learn import _sigmoid, planted_labels
from sparsecoded.stragglers import FixedDelay

N, K = 8, 6
DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "a9a.mtx.gz"
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


@pytest.fixture(scope="module")
def features(full_size):
    if full_size and DATA.is_file():
        return sp.csr_array(scipy.io.mmread(DATA)), "a9a"
    m = 32_561 if full_size else 3000
    rng = np.random.default_rng(9)
    return sp.csr_array(sp.random_array((m, 123), density=0.113, rng=rng)), f"random {m}x123"


@pytest.fixture(scope="module")
def pool():
    with LocalPool(N, timeout=60) as p:
        yield p


def _gd_step(op, y, w, step=0.5):
    z = op @ w
    r = -y * _sigmoid(-y * z) / y.shape[0]
    return w - step * (op.T @ r)


@pytest.mark.benchmark(group="a9a round n=8 k=6")
@pytest.mark.parametrize("case", ["scipy_forward", "scipy_transpose", "forward", "transpose"])
def test_round(benchmark, features, pool, case, full_size):
    A, _ = features
    rng = np.random.default_rng(1)
    w, r = rng.standard_normal(A.shape[1]), rng.standard_normal(A.shape[0])
    with CodedMatVec(A, design_mv(N, K, seed=0), pool) as op:
        op.T @ r  # place the column blocks outside the timing
        fn = {
            "scipy_forward": lambda: A @ w,
            "scipy_transpose": lambda: A.T @ r,
            "forward": lambda: op @ w,
            "transpose": lambda: op.T @ r,
        }[case]
        out = benchmark.pedantic(fn, rounds=300 if full_size else 5, warmup_rounds=10)
    ref = A @ w if "forward" in case else A.T @ r
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_gd_step_interleaved(benchmark, features, pool, full_size):
    A, name = features
    y, _ = planted_labels(A, seed=0)
    w0 = np.zeros(A.shape[1])
    reps = 40 if full_size else 3
    ops = {
        "sparse": CodedMatVec(A, design_mv(N, K, seed=0), pool),
        "uncoded": CodedMatVec(A, design_mv(N, N, "uncoded"), pool),
    }
    for op in ops.values():  # place both directions, warm up
        for _ in range(3):
            _gd_step(op, y, w0)
    compute = statistics.median(
        _timed(lambda: _gd_step(ops["sparse"], y, w0)) for _ in range(10 if full_size else 2)
    )
    delay = 10 * compute
    delayed = FixedDelay([2, 5], seconds=delay)
    times: dict[str, list[float]] = {f"{s}-{m}": [] for s in ops for m in ("none", "stragglers")}
    for _ in range(reps):
        for scheme, op in ops.items():
            for model in ("none", "stragglers"):
                op.stragglers = delayed if model == "stragglers" else None
                times[f"{scheme}-{model}"].append(_timed(lambda op=op: _gd_step(op, y, w0)))
    ref = _gd_step(A, y, w0)
    for op in ops.values():
        np.testing.assert_allclose(
            _gd_step(op, y, w0), ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max()
        )
        op.close()
    med = {key: statistics.median(v) for key, v in times.items()}
    spread = {key: (min(v), max(v)) for key, v in times.items()}
    result = {
        "matrix": name,
        "n": N,
        "k": K,
        "step_compute_seconds": compute,
        "delay_seconds": delay,
        "repetitions": reps,
        "median_seconds": med,
        "min_max_seconds": spread,
        "sparse_ratio": med["sparse-stragglers"] / med["sparse-none"],
        "uncoded_ratio": med["uncoded-stragglers"] / med["uncoded-none"],
    }
    benchmark.extra_info.update(result)
    benchmark.pedantic(lambda: None, rounds=1)
    print(json.dumps(result, indent=1))
    if full_size:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "gd-step.json").write_text(json.dumps(result, indent=1) + "\n")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
