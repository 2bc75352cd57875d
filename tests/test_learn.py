"""Training and solver workloads: the coded run follows the scipy run exactly."""

import numpy as np
import pytest
import scipy.sparse as sp

from sparsecoded import CodedMatVec, InlinePool, design_mv
from sparsecoded.learn import (
    least_squares,
    logistic_regression,
    pagerank,
    planted_labels,
    spectral_norm,
    transition_matrix,
)
from sparsecoded.stragglers import Crash, FixedDelay


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture
def features(rng):
    return sp.random_array((600, 40), density=0.2, format="csr", rng=rng)


def test_logistic_regression_coded_equals_scipy(features):
    y, _ = planted_labels(features, seed=1)
    ref = logistic_regression(features, y, iterations=60, l2=1e-3)
    assert ref.losses[-1] < ref.losses[0]  # it learns
    assert ref.accuracy > 0.6
    with InlinePool(8) as pool:
        op = CodedMatVec(
            features, design_mv(8, 6, seed=0), pool, stragglers=FixedDelay([1, 4], 1.0)
        )
        got = logistic_regression(op, y, iterations=60, l2=1e-3, step=None)
        assert _rel(got.losses[-1], ref.losses[-1]) < 1e-9
        assert got.accuracy == ref.accuracy
        assert np.allclose(got.x, ref.x, rtol=1e-9, atol=1e-12)
        assert {1, 4} <= set(op.report.cancelled)
        assert {1, 4} <= set(op.T.report.cancelled)


def test_least_squares_reaches_lstsq(rng):
    A = sp.random_array((300, 20), density=0.3, format="csr", rng=rng) + sp.eye_array(300, 20)
    A = sp.csr_array(A)
    b = rng.standard_normal(300)
    best = np.linalg.lstsq(A.toarray(), b, rcond=None)[0]
    with InlinePool(6) as pool:
        op = CodedMatVec(A, design_mv(6, 4, seed=0), pool, stragglers=Crash([2]))
        got = least_squares(op, b, iterations=3000)
        ref = least_squares(A, b, iterations=3000)
    assert np.allclose(got.x, ref.x, rtol=1e-9, atol=1e-12)
    assert np.linalg.norm(got.x - best) < 1e-6 * np.linalg.norm(best)


def test_pagerank_is_the_stationary_vector(rng):
    G = sp.random_array((400, 400), density=0.02, format="csr", rng=rng)
    G = sp.lil_array(G)
    G[[3, 7], :] = 0  # dangling nodes
    G = sp.csr_array(G)
    G.eliminate_zeros()
    M, dangling = transition_matrix(G)
    assert np.allclose(np.asarray(M.sum(axis=0)).ravel()[~dangling], 1.0)
    ref = pagerank(M, dangling)
    with InlinePool(8) as pool:
        op = CodedMatVec(M, design_mv(8, 6, seed=2), pool, stragglers=FixedDelay([0, 5], 1.0))
        got = pagerank(op, dangling)
    assert got.iterations == ref.iterations
    assert np.allclose(got.x, ref.x, rtol=1e-9, atol=1e-15)
    x = got.x
    assert abs(x.sum() - 1.0) < 1e-9
    again = 0.85 * (M @ x) + (0.85 * x[dangling].sum() + 0.15) / 400
    assert np.abs(again - x).sum() < 1e-9


def test_spectral_norm_estimate(rng):
    A = sp.random_array((200, 50), density=0.1, format="csr", rng=rng)
    exact = np.linalg.norm(A.toarray(), 2)
    assert abs(spectral_norm(A, iterations=200) - exact) < 1e-6 * exact


def test_bad_arguments(features):
    y, _ = planted_labels(features, seed=0)
    with pytest.raises(ValueError, match="labels has 5 entries, expected A.shape\\[0\\] = 600"):
        logistic_regression(features, y[:5])
    with pytest.raises(ValueError, match="labels must be"):
        logistic_regression(features, np.full(600, 3.0))
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        logistic_regression(features, y, iterations=0)
    with pytest.raises(ValueError, match="damping must be in"):
        pagerank(sp.eye_array(3, format="csr"), damping=1.0)


def test_transition_matrix_ignores_stored_zeros():
    G = sp.coo_array(([1.0, 0.0, 2.0, -2.0], ([0, 0, 0, 0], [1, 2, 2, 2])), shape=(3, 3))
    M, dangling = transition_matrix(G)
    assert M.toarray()[:, 0].tolist() == [0.0, 1.0, 0.0]  # only 0 -> 1 is an edge
    assert dangling.tolist() == [False, True, True]
