import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsecoded import MMCode, MVCode, certify, design_mm, design_mv
from sparsecoded.design.responders import exact_full_rank, hall_surplus_test


def _pitfall(n, k, w, rng):
    """SPEC 2's pitfall: worker i takes blocks i*w .. i*w+w-1 (mod k)."""
    rows = np.repeat(np.arange(n), w)
    cols = ((np.arange(n)[:, None] * w + np.arange(w)[None, :]) % k).ravel()
    return sp.csr_array((rng.standard_normal(rows.size), (rows, cols)), shape=(n, k))


def _rank(m):
    return np.linalg.matrix_rank(m)


def test_pitfall_rejected_with_witness(rng):
    e = _pitfall(6, 4, 2, rng)
    cert = certify(MVCode.from_matrix(e))
    assert not cert.straggler_optimal
    assert cert.method == "exhaustive"
    assert len(cert.witness) == 4
    assert _rank(e.toarray()[list(cert.witness)]) < 4


def test_pitfall_rejected_by_flow(rng):
    e = _pitfall(6, 4, 2, rng)
    cert = certify(MVCode.from_matrix(e), max_subsets=0)
    assert (cert.straggler_optimal, cert.method) == (False, "flow")
    assert len(cert.witness) == 4
    assert _rank(e.toarray()[list(cert.witness)]) < 4


def _hall_brute(pattern, s):
    n, k = pattern.shape
    for r in range(1, k + 1):
        for blocks in itertools.combinations(range(k), r):
            if np.count_nonzero(pattern[:, blocks].any(axis=1)) < r + s:
                return False
    return True


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 8), data=st.data(), seed=st.integers(0, 2**32 - 1), p=st.floats(0.2, 0.9))
def test_flow_test_agrees_with_brute_force_hall(n, data, seed, p):
    k = data.draw(st.integers(1, n))
    pattern = np.random.default_rng(seed).random((n, k)) < p
    ok, blocks = hall_surplus_test(sp.csr_array(pattern.astype(float)), n - k)
    assert ok == _hall_brute(pattern, n - k)
    if not ok:  # the returned set really violates the condition
        assert np.count_nonzero(pattern[:, blocks].any(axis=1)) < len(blocks) + n - k


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 40), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_flow_certifies_sparse_design_any_n(n, data, seed):
    k = data.draw(st.integers(1, n))
    code = design_mv(n, k, seed=seed, trials=1)
    cert = certify(code, max_subsets=0, samples=20, seed=seed)
    assert cert.straggler_optimal
    assert cert.method == "flow"


def test_flow_and_exhaustive_agree_on_sparse_n20(rng):
    code = design_mv(20, 16, seed=1, trials=1)
    assert certify(code).method == "exhaustive"
    assert certify(code).straggler_optimal
    assert certify(code, max_subsets=0).straggler_optimal


def test_degenerate_coefficients_caught():
    # full support but rank one: the flow test passes, the coefficients do not
    code = MVCode.from_matrix(np.ones((6, 3)))
    assert not certify(code).straggler_optimal
    cert = certify(code, max_subsets=0)
    assert not cert.straggler_optimal
    assert cert.witness is not None


def test_flow_is_no_proof_for_a_users_coefficients():
    # every even row lies in one 11-dimensional space: the 12 even workers
    # cannot decode, yet the support is full, so the flow test passes
    rng = np.random.default_rng(0)
    e = rng.standard_normal((24, 12))
    even = np.arange(0, 24, 2)
    e[even] = (rng.integers(-3, 4, (12, 11)) @ rng.integers(-3, 4, (11, 12))).astype(float)
    assert not exact_full_rank(e[even])
    cert = certify(MVCode.from_matrix(e), seed=0)
    assert cert.method == "sampled"
    assert not cert.proven
    assert design_mv(24, 12, seed=0).generic
    declared = certify(MVCode.from_matrix(e, generic=True), seed=0)
    assert (declared.method, declared.proven) == ("flow", True)


def test_many_float_singular_sets_are_all_checked_exactly():
    # three near-duplicate row pairs make over 1000 sets float64-singular
    # (yet exactly invertible); the last 7 rows are exactly singular
    rng = np.random.default_rng(0)
    e = rng.standard_normal((14, 7))
    for a in (0, 2, 4):
        e[a + 1] = e[a]
        e[a + 1, a // 2] = np.nextafter(e[a, a // 2], np.inf)
    e[7:] = (rng.integers(-3, 4, (7, 6)) @ rng.integers(-3, 4, (6, 7))).astype(float)
    cert = certify(MVCode.from_matrix(e))
    assert cert.numerically_singular > 1000
    assert (cert.straggler_optimal, cert.method, cert.proven) == (False, "exhaustive", True)
    assert not exact_full_rank(e[list(cert.witness)])


def test_reference_polynomial_mv_n18_k15():
    cert = certify(design_mv(18, 15, "polynomial"))
    assert cert.method == "exhaustive"
    assert cert.subsets_checked == math.comb(18, 15)
    assert f"{cert.worst_condition:.2e}" == "4.03e+07"


def test_reference_figures_n20_k16():
    """SPEC 6: sparse ~1e5, Gaussian ~6e4, Vandermonde ~3e8, Chebyshev ~4e5."""
    sparse = certify(design_mv(20, 16, seed=0)).worst_condition
    mds = certify(design_mv(20, 16, "mds", seed=0)).worst_condition
    poly = certify(design_mv(20, 16, "polynomial")).worst_condition
    cheb = certify(design_mv(20, 16, "orthopoly")).worst_condition
    assert 1e4 < sparse < 1e6
    assert 1e4 < mds < 3e5
    assert 1e8 < poly < 1e9
    assert 1e5 < cheb < 1e6
    assert poly > 100 * max(sparse, mds, cheb)


@pytest.mark.slow
def test_large_flow_certificate():
    code = design_mv(1000, 900, seed=0)
    cert = certify(code, seed=0)
    assert cert.straggler_optimal
    assert cert.method == "flow"
    assert cert.subsets_checked >= 1


def test_certify_rejects_other_objects():
    with pytest.raises(TypeError, match="MVCode or MMCode"):
        certify(np.eye(3))


def test_reference_polynomial_mm_n24_4x5():
    cert = certify(design_mm(24, 4, 5, "polynomial"))
    assert cert.method == "exhaustive"
    assert cert.subsets_checked == math.comb(24, 20)
    assert f"{cert.worst_condition:.2e}" == "2.40e+10"


@pytest.mark.parametrize(("n", "ka", "kb", "ref"), [(18, 5, 3, "2.51e+04"), (24, 4, 5, "1.97e+06")])
def test_reference_orthopoly_mm(n, ka, kb, ref):
    cert = certify(design_mm(n, ka, kb, "orthopoly"))
    assert cert.straggler_optimal
    assert f"{cert.worst_condition:.2e}" == ref


def test_mm_sampled_method_and_witness(rng):
    # n = 30, 3 x 5: C(30, 15) is far beyond max_subsets
    code = design_mm(30, 3, 5, "coarse", seed=0, trials=1)
    cert = certify(code, seed=0, samples=300)
    # generic coefficients: the flow test on the product rows is exact (Theorem 5.1)
    assert (cert.method, cert.straggler_optimal, cert.proven) == ("flow", True, True)
    from dataclasses import replace

    cert = certify(replace(code, generic=False), seed=0, samples=300)
    assert (cert.method, cert.straggler_optimal, cert.proven) == ("sampled", True, False)
    # uncoded-style layout: all workers but one on cell (0, 0) -> fails
    a = np.zeros((6, 2))
    b = np.zeros((6, 2))
    a[:, 0] = b[:, 0] = 1.0
    a[5] = [0.0, 1.0]
    bad = MMCode.from_matrices(a, b)
    cert = certify(bad)
    assert not cert.straggler_optimal
    assert np.linalg.matrix_rank(bad.product_rows()[list(cert.witness)]) < 4


def test_few_but_large_subsets_use_the_flow():
    # C(300, 299) = 300 subsets, each a 299 x 299 system: prove by flow instead
    cert = certify(design_mv(300, 299, seed=0, trials=1), samples=4, seed=0)
    assert (cert.straggler_optimal, cert.method) == (True, "flow")
    # weight 2: dropping one worker leaves a random bidiagonal system, far too
    # ill-conditioned for float64 although exactly invertible
    assert cert.numerically_singular >= 1
    assert cert.worst_condition == math.inf


def test_exact_rank_tells_singular_from_ill_conditioned(rng):
    ill = np.diag(rng.standard_normal(60)) + 1e4 * np.diag(rng.standard_normal(59), 1)
    assert np.linalg.matrix_rank(ill) < 60
    assert exact_full_rank(ill)
    sing = rng.standard_normal((40, 40))
    sing[7] = sing[3]
    assert not exact_full_rank(sing)


def test_mm_exact_check_uses_the_exact_products_not_the_rounded_ones():
    # rows 0, 1, 2 share b: a_i kron b (i = 0, 1, 2) span only 2 dimensions, so any 4
    # responders containing all three are singular for the exact products of the stored
    # floats; the rounded float products break that dependency and looked full rank
    from sparsecoded import MMCode

    rng = np.random.default_rng(1)
    for _ in range(10):
        a = rng.standard_normal((5, 2))
        b = rng.standard_normal((5, 2))
        b[1] = b[0]
        b[2] = b[0]
        cert = certify(MMCode.from_matrices(a, b))
        assert not cert.straggler_optimal, cert
        assert cert.witness is not None
        assert {0, 1, 2} <= set(cert.witness)
