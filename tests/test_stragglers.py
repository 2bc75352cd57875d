import numpy as np
import pytest

from sparsecoded.stragglers import (
    Action,
    Bernoulli,
    Crash,
    FixedDelay,
    NoStragglers,
    OnWorkers,
    ShiftedExponential,
    combine,
)


def test_fixed_delay_hits_only_its_workers_and_rounds():
    m = FixedDelay(workers=[1, 2], seconds=0.5, rounds=[3])
    assert m.action(1, 3) == Action(delay=0.5)
    assert m.action(1, 2) == Action()
    assert m.action(0, 3) == Action()


def test_crash_every_round_by_default():
    m = Crash(workers=[4])
    assert all(m.action(4, r).crash for r in range(5))
    assert not m.action(3, 0).crash


def test_seeded_models_replay_and_vary():
    a = ShiftedExponential(shift=0.01, scale=0.2, seed=7)
    b = ShiftedExponential(shift=0.01, scale=0.2, seed=7)
    plan = a.plan(8, 0)
    assert plan == b.plan(8, 0)
    assert all(act.delay >= 0.01 for act in plan)
    assert len({act.delay for act in plan}) == 8
    assert plan != a.plan(8, 1)


def test_bernoulli_rate():
    m = Bernoulli(0.3, 1.0, seed=1)
    hits = sum(m.action(w, r).delay > 0 for w in range(50) for r in range(40))
    assert 0.25 < hits / 2000 < 0.35


def test_combine_takes_max_delay_and_any_crash():
    m = combine(FixedDelay([0], 1.0), FixedDelay([0], 2.0), Crash([1]), NoStragglers())
    assert m.action(0, 0) == Action(delay=2.0)
    assert m.action(1, 0) == Action(crash=True)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: FixedDelay([0], -1), "seconds must be a finite number >= 0, got -1"),
        (lambda: Bernoulli(1.5, 1.0), r"p must be a probability in \[0, 1\], got 1.5"),
        (lambda: ShiftedExponential(shift=float("nan")), "shift must be a finite number"),
        (lambda: ShiftedExponential(seed=-1), "seed must be an int >= 0, got -1"),
        (lambda: Bernoulli(0.5, 1.0, seed=-3), "seed must be an int >= 0, got -3"),
    ],
)
def test_bad_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_non_int_seed_is_refused_at_construction():
    with pytest.raises(TypeError, match="seed must be an int >= 0, got float 1.5"):
        Bernoulli(0.5, 1.0, seed=1.5)


def test_models_sharing_a_seed_draw_independent_streams():
    # both default to seed 0: combined, their delays must not be correlated
    shifted = ShiftedExponential(shift=0.0, scale=1.0)
    coin = Bernoulli(0.5, 1.0)
    cells = [(w, r) for w in range(50) for r in range(40)]
    a = np.array([shifted.action(w, r).delay for w, r in cells])
    b = np.array([coin.action(w, r).delay for w, r in cells])
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1  # 2000 samples: sd of the estimate ~0.02


def test_reprs_say_which_rounds():
    assert repr(FixedDelay([1], 0.5, rounds=[3, 1])) == (
        "FixedDelay(workers=[1], seconds=0.5, rounds=[1, 3])"
    )
    assert repr(FixedDelay([1], 0.5)) == "FixedDelay(workers=[1], seconds=0.5)"
    assert repr(Crash([2], rounds=[0])) == "Crash(workers=[2], rounds=[0])"
    assert repr(Crash([2])) == "Crash(workers=[2])"


def test_on_workers_applies_the_model_to_its_workers_only():
    inner = ShiftedExponential(shift=0.1, scale=0.5, seed=3)
    m = OnWorkers(inner, workers=[1, 4])
    for r in range(3):
        assert m.action(1, r) == inner.action(1, r)
        assert m.action(4, r) == inner.action(4, r)
        assert m.action(0, r) == Action()
    assert m.plan(5, 0) == [Action(), inner.action(1, 0), Action(), Action(), inner.action(4, 0)]
    assert OnWorkers(Crash([0, 1]), workers=[1]).plan(2, 0) == [Action(), Action(crash=True)]


def test_on_workers_repr_and_bad_model():
    m = OnWorkers(ShiftedExponential(shift=0.5, scale=0.25, seed=0), workers=[3, 1])
    assert repr(m) == "ShiftedExponential(shift=0.5, scale=0.25, seed=0) on workers [1, 3]"
    with pytest.raises(TypeError, match="model must be a StragglerModel, got float"):
        OnWorkers(0.5, workers=[1])
