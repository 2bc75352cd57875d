"""InlinePool and what every backend shares (pools.base): the payload check at place(),
the O(1) operand check per round, the unchecked kernel entries, PoolBase, RoundTimeout.

scipy is the oracle; every backend runs the same checks, so they are tested here once,
on the in-process pool (LocalPool and DaskPool test their own wiring of them).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

from sparsecoded import kernels
from sparsecoded.errors import NotEnoughWorkers, PoolClosed, RoundTimeout
from sparsecoded.pools.base import (
    PoolBase,
    check_operand,
    check_threads,
    compute,
    compute_placed,
    place_payloads,
)
from sparsecoded.pools.inline import InlinePool, Timeline, virtual_clock
from sparsecoded.stragglers import Action


def everyone(n):
    return lambda results: len(results) >= n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xdtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("ncols", [None, 1, 3])
@pytest.mark.parametrize("fmt", ["csr", "coo", "csc", "dense"])
def test_placed_matvec_equals_the_checked_kernel_and_scipy(rng, dtype, xdtype, index, ncols, fmt):
    d = sp.random_array((9, 7), density=0.3, rng=rng, dtype=dtype).toarray()
    d[4] = 0  # an empty row
    a = sp.csr_array(d)
    a.indices, a.indptr = a.indices.astype(index), a.indptr.astype(index)
    block = a.toarray() if fmt == "dense" else a.asformat(fmt)
    x = rng.standard_normal(7 if ncols is None else (7, ncols)).astype(xdtype)
    ((p,),) = place_payloads([[block]], 1).payloads
    got = compute_placed("matvec", p, x, 1)
    np.testing.assert_array_equal(got, kernels.matvec(block, x, n_threads=1))
    assert got.dtype == np.result_type(dtype, xdtype)
    rtol = 1e-5 if np.float32 in (dtype, xdtype) else 1e-12
    np.testing.assert_allclose(got, a @ x, rtol=rtol, atol=rtol)
    if fmt != "dense" and index == np.int64:
        assert p.indices.dtype == np.int64  # never downcast


@pytest.mark.parametrize("dense_b", [False, True])
def test_placed_matmat_equals_scipy(rng, dense_b):
    a = sp.random_array((6, 8), density=0.3, rng=rng, format="csr")
    b = sp.random_array((8, 5), density=0.4, rng=rng, format="csc")
    pair = (a, b.toarray() if dense_b else b)
    ((p,),) = place_payloads([[pair]], 1).payloads
    got = compute_placed("matmat", p, None, 2)
    got = got.toarray() if sp.issparse(got) else got
    _want = (a @ b).toarray()
    np.testing.assert_allclose(got, _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max())
    _want = np.asarray(_dense(compute("matmat", pair, None)))
    np.testing.assert_allclose(got, _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max())


def _dense(m):
    return m.toarray() if sp.issparse(m) else m


def test_payloads_are_checked_in_full_once(rng):
    good = sp.random_array((3, 4), density=0.5, rng=rng, format="csr")
    bad = good.copy()
    bad.indices[0] = 4
    with pytest.raises(IndexError, match=r"payloads\[1\]\[0\]: column index 4 .* < 4"):
        place_payloads([[good], [bad]], 2)
    bad = good.copy()
    bad.indptr[1], bad.indptr[2] = bad.indptr[2] + 1, bad.indptr[1]
    with pytest.raises(ValueError, match=r"payloads\[0\]\[1\].indptr"):
        place_payloads([[good, bad]], 1)
    with pytest.raises(ValueError, match=r"payloads\[0\]\[0\] has complex dtype"):
        place_payloads([[good.astype(complex)]], 1)
    with pytest.raises(TypeError, match=r"payloads\[0\]\[0\] is a list, expected"):
        place_payloads([[[good, good, good]]], 1)
    with pytest.raises(ValueError, match=r"payloads\[0\]\[0\]\[1\] has 5 rows, expected .* = 4"):
        place_payloads([[(good, np.ones((5, 2)))]], 1)
    with pytest.raises(ValueError, match="payloads has 1 entries, expected n_workers = 2"):
        place_payloads([[good]], 2)
    with pytest.raises(TypeError, match=r"payloads\[0\] is a csr_array, expected a list"):
        place_payloads([good], 1)


def test_the_operand_check_is_against_the_placed_payloads(rng):
    a = sp.random_array((3, 4), density=0.5, rng=rng, format="csr")
    job = place_payloads([[a], [], [a, 2 * a]], 3)
    assert check_operand(job, "matvec", np.ones(4)).shape == (4,)
    assert check_operand(job, "matvec", np.ones((4, 2), order="F")).shape == (4, 2)
    for x, message in [
        (np.ones(5), r"operand has 5 rows, expected 4 \(the columns of payload \(0, 0\)\)"),
        (np.ones((4, 1, 1)), "operand has 3 dimensions, expected 1"),
        (np.ones(4, dtype=np.int64), "operand has dtype int64, expected float32 or float64"),
        (np.ones(4, dtype=np.float16), "operand has dtype float16"),
        (None, "op 'matvec' needs an operand, got None"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_operand(job, "matvec", x)
    with pytest.raises(ValueError, match=r"op 'matmat' needs a pair .* payload \(0, 0\)"):
        check_operand(job, "matmat", None)
    mixed = place_payloads([[a], [sp.random_array((3, 6), density=0.5, rng=rng)]], 2)
    with pytest.raises(ValueError, match=r"expected 6 \(the columns of payload \(1, 0\)\)"):
        check_operand(mixed, "matvec", np.ones(4))
    pairs = place_payloads([[(a, a.T)]], 1)
    assert check_operand(pairs, "matmat", None) is None
    with pytest.raises(ValueError, match=r"op 'matvec' needs a matrix in payload \(0, 0\)"):
        check_operand(pairs, "matvec", np.ones(4))


@pytest.mark.parametrize("bad", [0, -2, 1.0, True, None, "1"])
def test_threads_per_worker_check(bad):
    with pytest.raises(ValueError, match="threads_per_worker must be"):
        check_threads(bad)
    assert check_threads(np.int64(3)) == 3


def test_inline_rounds_are_exact_and_time_out_with_round_timeout(rng):
    blocks = [sp.random_array((5, 6), density=0.4, rng=rng, format="csr") for _ in range(3)]
    x = rng.standard_normal(6)
    with InlinePool(3, timeout=10) as pool:
        assert isinstance(pool, PoolBase)
        pool.place("j", [[b] for b in blocks])
        r = pool.run(
            "j", "matvec", x, enough=everyone(2), actions=[Action(delay=5), Action(), Action()]
        )
        assert sorted(r.results) == [(1, 0), (2, 0)]
        assert r.cancelled == [0]
        for (w, _), got in r.results.items():
            _want = blocks[w] @ x
            np.testing.assert_allclose(got, _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max())
        with pytest.raises(RoundTimeout, match=r"timed out after 1 s; 2 of 3") as info:
            pool.run(
                "j",
                "matvec",
                x,
                enough=everyone(3),
                actions=[Action(delay=5), Action(), Action()],
                timeout=1,
            )
        assert isinstance(info.value, TimeoutError)
        assert info.value.partial is None
        with pytest.raises(NotEnoughWorkers, match="dead workers: \\[0\\]") as info:
            pool.run(
                "j",
                "matvec",
                x,
                enough=everyone(3),
                actions=[Action(crash=True), Action(), Action()],
            )
        assert not isinstance(info.value, RoundTimeout)
        assert not re.search(r"round \d", str(info.value))
        assert sorted(info.value.partial.results) == [(1, 0), (2, 0)]
        with pytest.raises(ValueError, match="operand has 7 rows, expected 6"):
            pool.run("j", "matvec", np.ones(7), enough=everyone(3))
    with pytest.raises(PoolClosed, match=r"this InlinePool is closed \(close\(\) was called\)"):
        pool.run("j", "matvec", x, enough=everyone(3))
    with pytest.raises(PoolClosed), pool:
        pass


def test_virtual_clock_is_unchanged():
    line = virtual_clock([[1.0, 1.0], [0.5]], [Action(delay=1.0), Action()], lambda o: len(o) == 2)
    assert line == Timeline([(1, 0), (0, 0)], [0.5, 2.0], 2.0, [])
