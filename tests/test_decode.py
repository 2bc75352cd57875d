import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from sparsecoded.decode import Decoder


def spec_cyclic(n, k, rng):
    """SPEC section 2's construction, written out independently of the design layer."""
    w = -(-k * (n - k + 1) // n)
    E = np.zeros((n, k))
    for i in range(n):
        for q in range(w):
            E[i, (i * k // n + q) % k] = rng.standard_normal()
    return E


def check_solves(E, rows, rng, tail=(7, 3)):
    plan = Decoder(E).plan(rows)
    assert plan is not None
    k = E.shape[1]
    Z = rng.standard_normal((k, *tail))
    Y = np.einsum("rk,k...->r...", E[plan.rows], Z)
    atol = 1e-9 * max(1.0, plan.condition)
    np.testing.assert_allclose(plan.solve(Y), Z, rtol=0, atol=atol)
    # both ways of applying a plan: the cached inverse (small k) and the substitution
    Y2 = Y.reshape(len(plan.rows), -1)
    np.testing.assert_allclose(
        plan._substitute(Y2, np.dtype(np.float64)), Z.reshape(k, -1), rtol=0, atol=atol
    )
    return plan


@pytest.mark.parametrize(("n", "k"), [(6, 4), (8, 6), (7, 7), (5, 1), (9, 3)])
def test_every_k_subset_of_a_straggler_optimal_code_decodes(n, k, rng):
    E = spec_cyclic(n, k, rng)
    for rows in itertools.combinations(range(n), k):
        check_solves(E, list(rows), rng)


def test_large_k_uses_sparse_factorisation(rng):
    E = spec_cyclic(300, 270, rng)
    rows = rng.permutation(300)[:270]
    plan = check_solves(E, rows, rng, tail=(2,))
    assert {c.kind for c in plan.components} <= {"sparse", "dense", "scale", "copy"}
    assert any(c.kind == "sparse" for c in plan.components)


def test_weight_one_rows_are_copies_and_triangular_structure_is_used(rng):
    # systematic part (identity) plus one parity row: every unknown but one is a copy
    k = 5
    E = np.vstack([np.eye(k), rng.standard_normal((1, k))])
    plan = check_solves(E, [5, 1, 2, 3, 4], rng)
    kinds = sorted(c.kind for c in plan.components)
    assert kinds == ["copy"] * 4 + ["scale"]
    assert plan.n_components == k


def test_rank_deficient_responders_give_no_plan():
    E = np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    dec = Decoder(E)
    assert dec.plan([0, 1, 2]) is None  # column 2 unreachable
    assert dec.plan([0, 2]) is None  # fewer than k
    # numerically singular although structurally fine
    E2 = np.array([[1.0, 1.0], [2.0, 2.0], [1.0, 0.0]])
    assert Decoder(E2).plan([0, 1]) is None
    assert Decoder(E2).plan([0, 1, 2]) is not None


def test_more_responders_than_unknowns_pick_a_nonsingular_subset(rng):
    E = np.vstack([np.eye(3), np.eye(3), [[1.0, 1.0, 0.0]]])
    plan = check_solves(E, [0, 3, 6, 2], rng)
    assert len(plan.rows) == 3


def test_ill_conditioned_square_system_falls_back_to_least_squares(rng):
    eps = 1e-9
    E = np.array([[1.0, 1.0], [1.0, 1.0 + eps], [1.0, -1.0]])
    dec = Decoder(E, max_condition=1e6)
    square = dec.plan([0, 1])
    assert square.condition > 1e6
    assert not dec.acceptable(square)
    both = dec.plan([0, 1, 2])
    assert dec.acceptable(both)
    Z = rng.standard_normal((2, 4))
    np.testing.assert_allclose(both.solve(E[both.rows] @ Z), Z, atol=1e-9)


def test_plans_are_cached_per_responder_set(rng):
    dec = Decoder(spec_cyclic(8, 6, rng))
    a = dec.plan([0, 1, 2, 3, 4, 5])
    b = dec.plan([5, 4, 3, 2, 1, 0])
    assert a is b
    assert (dec.hits, dec.misses) == (1, 1)


def test_combine_decodes_sparse_results_sparsely(rng):
    E = spec_cyclic(6, 4, rng)
    blocks = [sp.random_array((20, 30), density=0.1, format="csr", rng=int(s)) for s in range(4)]
    results = [sp.csr_array(sum(E[i, j] * blocks[j] for j in range(4))) for i in range(6)]
    plan = Decoder(E).plan([5, 3, 1, 0])
    out = plan.combine([results[r] for r in plan.rows])
    for j in range(4):
        assert sp.issparse(out[j])
        np.testing.assert_allclose(out[j].toarray(), blocks[j].toarray(), atol=1e-10)


def test_combine_keeps_small_coefficients_beside_large_ones():
    # G = E^-1 = [[1e-14, 0], [-1e-14, 1]]: row 1 mixes coefficients 14 orders
    # apart, and both are needed (a cut relative to the row's largest dropped one)
    E = np.array([[1e14, 0.0], [1.0, 1.0]])
    blocks = [sp.csr_array(np.array([[1.0, 2.0]])), sp.csr_array(np.array([[3.0, 4.0]]))]
    results = [sp.csr_array(sum(E[i, j] * blocks[j] for j in range(2))) for i in range(2)]
    plan = Decoder(E).plan([0, 1])
    out = plan.combine([results[r] for r in plan.rows])
    for j in range(2):
        _want = blocks[j].toarray()
        np.testing.assert_allclose(
            out[j].toarray(), _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
        )


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN or inf"):
        Decoder(np.array([[np.nan, 1.0]]))
    plan = Decoder(np.eye(2)).plan([0, 1])
    with pytest.raises(ValueError, match="Y has 3 results, expected 2"):
        plan.solve(np.ones((3, 4)))


def _real_matrix(name):
    import os

    import scipy.io

    path = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", f"{name}.mtx.gz")
    for p in (path, f"/work/shared/data/{name}.mtx.gz"):
        if os.path.exists(p):
            return sp.csr_array(scipy.io.mmread(p))
    pytest.skip(f"{name}.mtx.gz not found in shared/data")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["email-Enron", "cage11"])
@pytest.mark.parametrize("scheme", ["sparse", "mds"])
def test_coded_matmat_keeps_the_sparsity_of_the_product(name, scheme):
    """Decoded A @ A stores at most 1.05x scipy's nonzeros, within 1e-9 relative error."""
    from sparsecoded import CodedMatMat, InlinePool, design_mm

    A = _real_matrix(name)
    ref = A @ A
    with CodedMatMat(A, A, design_mm(8, 2, 2, scheme, seed=1), InlinePool(8)) as job:
        C = job.compute()
    assert sp.issparse(C)
    assert C.nnz <= 1.05 * ref.nnz
    assert abs(C - ref).max() <= 1e-9 * abs(ref).max()
