import math

import pytest

from sparsecoded.design import bounds


@pytest.mark.parametrize(("k", "expected"), [(16, 4), (18, 3), (10, 6), (20, 1), (1, 1)])
def test_mv_weight_spec_table_n20(k, expected):
    assert bounds.mv_weight(20, k) == expected


def test_mv_weight_is_the_counting_bound():
    for n in range(1, 60):
        for k in range(1, n + 1):
            w = bounds.mv_weight(n, k)
            # the smallest w whose n rows can hold k (s + 1) block copies
            assert n * w >= k * (n - k + 1) > n * (w - 1)


@pytest.mark.parametrize(
    ("n", "k", "match"),
    [
        (5, 6, "k must be <= n_workers = 5, got k = 6"),
        (5, 0, "k must be >= 1, got 0"),
        (5, 2.5, "k must be an integer"),
    ],
)
def test_mv_weight_rejects_infeasible(n, k, match):
    with pytest.raises(ValueError, match=match):
        bounds.mv_weight(n, k)


def test_mm_spec_example():
    assert bounds.mm_conditions(24, 4, 5) == (5, 2, 2)
    assert bounds.mm_weights(24, 4, 5) == (2, 3)
    assert bounds.mm_weights(24, 5, 4) == (3, 2)  # the same code with A and B swapped


def test_mm_weights_minimal_product_and_all_conditions():
    for n in range(1, 31):
        for ka in range(1, n + 1):
            for kb in range(1, n // ka + 1):
                wa, wb = bounds.mm_weights(n, ka, kb)
                s = n - ka * kb
                assert wa * wb >= math.ceil(ka * kb * (s + 1) / n)
                assert wa >= math.ceil(ka * (kb + s) / n)
                assert wb >= math.ceil(kb * (ka + s) / n)
                best = min(
                    a * b
                    for a in range(1, ka + 1)
                    for b in range(1, kb + 1)
                    if a * b >= math.ceil(ka * kb * (s + 1) / n)
                    and a >= math.ceil(ka * (kb + s) / n)
                    and b >= math.ceil(kb * (ka + s) / n)
                )
                assert wa * wb == best


def test_mm_systematic_when_no_stragglers():
    assert bounds.mm_weights(20, 4, 5) == (1, 1)


def test_mm_rejects_infeasible():
    with pytest.raises(
        ValueError, match="k_a \\* k_b must be <= n_workers = 19, got k_a \\* k_b = 20"
    ):
        bounds.mm_weights(19, 4, 5)
    with pytest.raises(ValueError, match="k_a must be >= 1, got 0"):
        bounds.mm_weights(19, 0, 5)


def test_hetero_stragglers_and_weight():
    assert bounds.hetero_stragglers([1, 1, 1, 2, 3], 4) == 1
    assert bounds.hetero_stragglers([1] * 10, 7) == 3
    # homogeneous capacities reduce to the MV bound
    assert bounds.hetero_weight([1] * 20, 16) == bounds.mv_weight(20, 16)
    assert bounds.hetero_weight([2, 2, 2, 2], 5) == math.ceil(5 * 2 / 8)


@pytest.mark.parametrize(
    ("caps", "match"),
    [
        ([1, -1, 3], "capacities must be >= 0, got capacities\\[1\\] = -1"),
        ([1, 1.5, 3], "capacities must be integers, got capacities\\[1\\] = 1.5"),
        ([1, 1, 1], "at least k = 4 blocks in total, got 3"),
    ],
)
def test_capacities_rejected(caps, match):
    with pytest.raises(ValueError, match=match):
        bounds.hetero_stragglers(caps, 4)


def test_hetero_stragglers_beyond_capacity_rejected():
    with pytest.raises(ValueError, match="stragglers must be <= 1 .* got 2"):
        bounds.hetero_weight([1, 1, 1, 2, 3], 4, stragglers=2)


def test_counting_condition_refines_spec():
    # SPEC's three conditions admit (2, 2) at n = 19, 3 x 5; counting the
    # workers that hold one B-block shows it is infeasible
    assert bounds.mm_weights(19, 3, 5) == (2, 2)
    assert not bounds.mm_counting_ok(19, 3, 5, 2, 2)
    assert bounds.mm_weights(19, 3, 5, refined=True) == (2, 3)
    for n in range(1, 31):
        for ka in range(1, n + 1):
            for kb in range(1, n // ka + 1):
                assert bounds.mm_counting_ok(n, ka, kb, ka, kb)  # dense always passes
                wa, wb = bounds.mm_weights(n, ka, kb, refined=True)
                assert wa * wb >= math.prod(bounds.mm_weights(n, ka, kb))


def test_coded_density():
    assert bounds.coded_density(0.0, 5) == 0.0
    assert bounds.coded_density(1.0, 1) == 1.0
    assert bounds.coded_density(0.01, 0) == 0.0
    with pytest.raises(ValueError, match="density must be in \\[0, 1\\], got 2"):
        bounds.coded_density(2, 1)
