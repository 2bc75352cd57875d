import itertools
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsecoded import MMCode, MVCode, certify, design_mm, design_mv
from sparsecoded.design import MM_SCHEMES, MV_SCHEMES, bounds


def _decode_all_subsets(code, rng, max_sets=500):
    """Solve with every (or many) k-sets of responders on random data."""
    n, k = code.n_workers, code.k
    e = code.encoding.toarray()
    blocks = rng.standard_normal((k, 3))
    results = e @ blocks
    subsets = list(itertools.combinations(range(n), k))
    if len(subsets) > max_sets:
        pick = rng.choice(len(subsets), max_sets, replace=False)
        subsets = [subsets[i] for i in pick]
    for w in subsets:
        w = list(w)
        z = np.linalg.solve(e[w], results[w])
        np.testing.assert_allclose(z, blocks, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("layout", ["random", "cyclic"])
def test_sparse_weight_meets_bound_every_k(layout):
    for n in range(1, 41):
        for k in range(1, n + 1):
            code = design_mv(n, k, seed=0, trials=1, layout=layout)
            assert code.weight == bounds.mv_weight(n, k)
            assert code.stragglers == n - k
            assert code.encoding.shape == (n, k)


@pytest.mark.parametrize("k", [1, 10, 500, 900, 999, 1000])
def test_sparse_weight_n1000(k):
    code = design_mv(1000, k, seed=0, trials=1)
    assert code.weight == bounds.mv_weight(1000, k)
    assert np.all(np.diff(code.encoding.indptr) == code.weight)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 11), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_random_sparse_designs_certify_and_decode(n, data, seed):
    k = data.draw(st.integers(1, n))
    code = design_mv(n, k, seed=seed, trials=1)
    cert = certify(code)
    assert cert.straggler_optimal, cert
    assert cert.method == "exhaustive"
    _decode_all_subsets(code, np.random.default_rng(seed))


def test_design_is_deterministic_under_seed():
    a = design_mv(20, 16, seed=7, trials=2)
    b = design_mv(20, 16, seed=7, trials=2)
    c = design_mv(20, 16, seed=8, trials=2)
    assert (a.encoding != b.encoding).nnz == 0
    assert (a.encoding != c.encoding).nnz > 0


def test_best_of_trials_is_no_worse_than_one_draw():
    one = certify(design_mv(20, 16, seed=3, trials=1)).worst_condition
    five = certify(design_mv(20, 16, seed=3, trials=5)).worst_condition
    assert five <= one  # the first draw is among the five


def test_code_attributes_plain_and_picklable():
    code = design_mv(12, 9, seed=0)
    back = pickle.loads(pickle.dumps(code))
    assert isinstance(back.encoding, sp.csr_array)
    assert back.encoding.dtype == np.float64
    np.testing.assert_array_equal(back.owner, np.arange(12))
    assert back.capacities is None
    assert back.scheme == "sparse"


def test_uncoded_convention():
    code = design_mv(6, 4, "uncoded")
    e = code.encoding.toarray()
    np.testing.assert_array_equal(e[:4], np.eye(4))
    assert not e[4:].any()
    assert code.stragglers == 0
    assert code.weight == 1


def test_replication_convention():
    code = design_mv(9, 4, "replication")
    e = code.encoding.toarray()
    assert all(e[i, i % 4] == 1 and e[i].sum() == 1 for i in range(9))
    assert code.stragglers == 1  # block 0 has 3 copies, the others 2
    assert not certify(code).straggler_optimal


@pytest.mark.parametrize("scheme", ["mds", "polynomial", "orthopoly"])
def test_dense_baselines(scheme):
    code = design_mv(10, 7, scheme, seed=0)
    assert code.weight == 7
    assert code.stragglers == 3
    assert certify(code).straggler_optimal


def test_polynomial_nodes():
    e = design_mv(4, 3, "polynomial").encoding.toarray()
    z = np.array([-0.5, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(e, np.vander(z, 3, increasing=True))


def test_from_matrix_roundtrip():
    e = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    code = MVCode.from_matrix(e)
    assert (code.n_workers, code.k, code.stragglers, code.weight) == (3, 2, 1, 2)
    np.testing.assert_array_equal(code.encoding.toarray(), e)


def test_errors_name_limit_and_value():
    with pytest.raises(ValueError, match="k must be <= n_workers = 5, got k = 7"):
        design_mv(5, 7)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        design_mv(5, 0)
    with pytest.raises(ValueError, match="scheme must be one of"):
        design_mv(5, 3, "bogus")
    with pytest.raises(ValueError, match="trials must be an integer >= 1, got 0"):
        design_mv(5, 3, trials=0)


def test_scheme_lists():
    assert set(MV_SCHEMES) < set(MM_SCHEMES)
    assert "rkrp" in MM_SCHEMES


# ---------------------------------------------------------------------------
# matrix-matrix


@pytest.mark.parametrize(
    ("n", "ka", "kb"), [(24, 4, 5), (18, 5, 3), (10, 3, 3), (12, 3, 3), (20, 4, 5)]
)
def test_sparse_mm_reaches_minimal_pair(n, ka, kb):
    code = design_mm(n, ka, kb, "coarse", seed=0, trials=1)
    assert (code.weight_a, code.weight_b) == bounds.mm_weights(n, ka, kb)
    assert code.target_weights == bounds.mm_weights(n, ka, kb)
    assert not code.fallback
    assert code.stragglers == n - ka * kb
    assert code.encoding_a.shape == (n, ka)
    assert code.encoding_b.shape == (n, kb)
    assert certify(code).straggler_optimal


def test_sparse_mm_decodes_products(rng):
    code = design_mm(12, 3, 3, "coarse", seed=1, trials=1)
    a_blocks = [sp.random_array((4, 6), density=0.4, rng=rng).toarray() for _ in range(3)]
    b_blocks = [sp.random_array((6, 5), density=0.4, rng=rng).toarray() for _ in range(3)]
    ea, eb = code.encoding_a.toarray(), code.encoding_b.toarray()
    results = [
        sum(ea[i, p] * a_blocks[p] for p in range(3))
        @ sum(eb[i, q] * b_blocks[q] for q in range(3))
        for i in range(12)
    ]
    truth = np.stack([a_blocks[p] @ b_blocks[q] for p in range(3) for q in range(3)])
    rows = code.product_rows()
    for w in itertools.islice(itertools.combinations(range(12), 9), 0, None, 7):
        y = np.stack([results[i] for i in w]).reshape(9, -1)
        z = np.linalg.solve(rows[list(w)], y).reshape(truth.shape)
        np.testing.assert_allclose(z, truth, atol=1e-8)


@pytest.mark.parametrize("scheme", ["mds", "polynomial", "orthopoly", "rkrp"])
def test_mm_dense_baselines_certify(scheme):
    code = design_mm(12, 3, 3, scheme, seed=0)
    assert code.stragglers == 3
    assert certify(code).straggler_optimal


def test_mm_rkrp_is_systematic():
    code = design_mm(12, 3, 3, "rkrp", seed=0)
    np.testing.assert_array_equal(code.product_rows()[:9], np.eye(9))


def test_mm_uncoded_and_replication_conventions():
    un = design_mm(10, 2, 3, "uncoded")
    assert un.stragglers == 0
    assert not un.product_rows()[6:].any()
    rep = design_mm(13, 2, 3, "replication")
    assert rep.stragglers == 1
    assert (rep.weight_a, rep.weight_b) == (1, 1)


def test_mm_from_matrices_and_pickle():
    code = design_mm(10, 3, 3, "coarse", seed=0, trials=1)
    again = MMCode.from_matrices(code.encoding_a, code.encoding_b)
    np.testing.assert_array_equal(again.product_rows(), code.product_rows())
    back = pickle.loads(pickle.dumps(code))
    assert back.fallback == code.fallback
    assert back.target_weights == code.target_weights


def test_mm_errors():
    with pytest.raises(
        ValueError, match="k_a \\* k_b must be <= n_workers = 19, got k_a \\* k_b = 20"
    ):
        design_mm(19, 4, 5)
    with pytest.raises(ValueError, match="k_b must be >= 1, got 0"):
        design_mm(19, 4, 0)
    with pytest.raises(ValueError, match="scheme must be one of"):
        design_mm(19, 2, 2, "bogus")
    with pytest.raises(
        ValueError, match="encoding_b has 2 rows, expected encoding_a.shape\\[0\\] = 3"
    ):
        MMCode.from_matrices(np.ones((3, 1)), np.ones((2, 1)))


# ---------------------------------------------------------------------------
# heterogeneous devices


@pytest.mark.parametrize(
    ("caps", "k"),
    [([1, 1, 2, 2, 4], 5), ([2, 2, 2, 2], 5), ([1, 2, 3, 1, 2, 3, 1, 2], 8), ([3, 1, 1, 1, 2], 4)],
)
def test_hetero_design_tolerates_physical_stragglers(caps, k, rng):
    code = design_mv(len(caps), k, capacities=caps, seed=0)
    assert code.capacities == tuple(caps)
    assert code.encoding.shape == (sum(caps), k)
    np.testing.assert_array_equal(np.bincount(code.owner, minlength=len(caps)), caps)
    assert code.stragglers == bounds.hetero_stragglers(caps, k)
    assert bounds.hetero_weight(caps, k) <= code.weight <= bounds.mv_weight(sum(caps), k)
    cert = certify(code)
    assert cert.straggler_optimal
    # every set of s silenced devices: the survivors' rows decode random data
    e = code.encoding.toarray()
    blocks = rng.standard_normal((k, 2))
    for dead in itertools.combinations(range(len(caps)), code.stragglers):
        rows = np.flatnonzero(~np.isin(code.owner, dead))
        z, *_ = np.linalg.lstsq(e[rows], e[rows] @ blocks, rcond=None)
        np.testing.assert_allclose(z, blocks, atol=1e-8)


def test_hetero_unit_capacities_match_homogeneous():
    code = design_mv(12, 9, capacities=[1] * 12, seed=0, trials=1)
    assert code.weight == bounds.mv_weight(12, 9)
    assert code.stragglers == 3


def test_hetero_certify_finds_bad_device_layout():
    # device 0 holds both copies of block 0: silencing it loses block 0
    e = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    code = MVCode.from_matrix(e, owner=[0, 0, 1, 2])
    assert code.stragglers == 1
    cert = certify(code)
    assert not cert.straggler_optimal
    assert cert.witness == (1, 2)


def test_hetero_errors():
    with pytest.raises(ValueError, match="capacities must be >= 0, got capacities\\[0\\] = -1"):
        design_mv(3, 2, capacities=[-1, 2, 2])
    with pytest.raises(ValueError, match="capacities must be integers"):
        design_mv(3, 2, capacities=[1.5, 2, 2])
    with pytest.raises(ValueError, match="at least k = 9 blocks in total, got 6"):
        design_mv(3, 9, capacities=[2, 2, 2])
    with pytest.raises(ValueError, match="capacities must have length n_workers = 4, got 3"):
        design_mv(4, 2, capacities=[2, 2, 2])
    with pytest.raises(ValueError, match="stragglers must be <= 1 .* got 2"):
        design_mv(3, 4, capacities=[2, 2, 2], stragglers=2)


@pytest.mark.parametrize(("n", "ka", "kb"), [(19, 3, 5), (22, 3, 4)])
def test_sparse_mm_falls_back_past_infeasible_spec_pair(n, ka, kb):
    code = design_mm(n, ka, kb, "coarse", seed=0, trials=1)
    assert code.fallback
    assert code.target_weights == bounds.mm_weights(n, ka, kb)
    assert (code.weight_a, code.weight_b) == bounds.mm_weights(n, ka, kb, refined=True)
    assert "infeasible" in code.fallback_reason
    assert certify(code, samples=200, seed=0).straggler_optimal


def test_hetero_large_uses_virtual_design_proven_by_flow():
    caps = [2] * 30
    code = design_mv(30, 40, capacities=caps, seed=0, trials=1)
    assert code.stragglers == 10
    # C(30, 10) device sets are too many to enumerate: the virtual design
    assert code.weight == bounds.mv_weight(60, 40)
    cert = certify(code, samples=50, seed=0)
    assert (cert.straggler_optimal, cert.method) == (True, "flow")


@pytest.mark.parametrize(("n", "ka", "kb"), [(24, 1, 16), (24, 16, 1)])
def test_sparse_mm_with_one_side_unsplit_is_the_mv_layout(n, ka, kb):
    code = design_mm(n, ka, kb, "coarse", seed=0, trials=1)
    assert (code.weight_a, code.weight_b) == bounds.mm_weights(n, ka, kb)
    assert not code.fallback
    assert certify(code, samples=300, seed=0).straggler_optimal


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 30), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_random_layout_same_weight_and_certified(n, data, seed):
    k = data.draw(st.integers(1, n))
    code = design_mv(n, k, seed=seed, trials=1, layout="random")
    assert code.weight == bounds.mv_weight(n, k)
    assert certify(code, max_subsets=0, samples=20, seed=0).straggler_optimal


def test_random_layout_conditions_better_at_n100():
    # the cyclic band is ill-conditioned when a run of workers straggles
    cyc = certify(design_mv(100, 80, seed=0, layout="cyclic"), max_subsets=0, samples=100, seed=0)
    rnd = certify(design_mv(100, 80, seed=0, layout="random"), max_subsets=0, samples=100, seed=0)
    assert rnd.straggler_optimal
    assert rnd.worst_condition * 100 < cyc.worst_condition


def test_layout_rejected():
    with pytest.raises(ValueError, match="layout must be 'cyclic' or 'random', got 'band'"):
        design_mv(10, 5, layout="band")


def test_sparse_mm_reaches_refined_minimum_small_n():
    # the full sweep n <= 30 (1492 cases, about 12 min) is in the report
    for n in range(1, 13):
        for ka in range(1, n + 1):
            for kb in range(1, n // ka + 1):
                code = design_mm(n, ka, kb, "coarse", seed=0, trials=1)
                pair = (code.weight_a, code.weight_b)
                assert pair == bounds.mm_weights(n, ka, kb, refined=True), (n, ka, kb)
                assert code.fallback == (pair != bounds.mm_weights(n, ka, kb))
