"""Seeded straggler models, applied by the pools on the worker side.

A model answers, for a worker and a round, what that worker does in that round:
wait ``delay`` seconds before (interruptibly) computing, and/or ``crash`` (the
process dies mid-round: SIGKILL on :class:`~sparsecoded.LocalPool`, process exit
on Dask).  Workers are *physical* devices.  Round indices count the calls of
one coded job, from 0.  Every model is a pure function of its seed, the worker
and the round, so a run can be replayed exactly.

Examples
--------
>>> from sparsecoded.stragglers import FixedDelay, Crash, combine
>>> model = combine(FixedDelay(workers=[0, 3], seconds=2.0), Crash(workers=[5], rounds=[0]))
>>> [model.action(w, 0) for w in (0, 1, 5)]
[Action(delay=2.0, crash=False), Action(delay=0.0, crash=False), Action(delay=0.0, crash=True)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Action",
    "Bernoulli",
    "Crash",
    "FixedDelay",
    "NoStragglers",
    "OnWorkers",
    "ShiftedExponential",
    "StragglerModel",
    "combine",
]


@dataclass(frozen=True)
class Action:
    """What one worker does in one round: sleep ``delay`` seconds, then compute, or crash."""

    delay: float = 0.0
    crash: bool = False


_IDLE = Action()


class StragglerModel:
    """Base class: subclasses implement :meth:`action`."""

    def action(self, worker: int, round_index: int) -> Action:  # pragma: no cover - abstract
        raise NotImplementedError

    def plan(self, n_workers: int, round_index: int) -> list[Action]:
        """Actions of workers ``0 .. n_workers-1`` in one round."""
        return [self.action(w, round_index) for w in range(n_workers)]


def _check_rounds(rounds: Iterable[int] | None) -> frozenset[int] | None:
    return None if rounds is None else frozenset(int(r) for r in rounds)


def _rounds_repr(rounds: frozenset[int] | None) -> str:
    return "" if rounds is None else f", rounds={sorted(rounds)}"


def _check_seed(seed: int) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int >= 0, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed}")
    return int(seed)


# One stream per seeded model: models that share a seed (the default, 0) draw
# independent numbers, so combine(ShiftedExponential(...), Bernoulli(...)) is not
# correlated.  Large constants: a short seed list is padded with zeros, so small
# ones could meet another default_rng([seed, k]) of the package.
_STREAM_SHIFTED_EXPONENTIAL = 0x5E0D_E501
_STREAM_BERNOULLI = 0x5E0D_B302


def _check_seconds(seconds: float, name: str = "seconds") -> float:
    seconds = float(seconds)
    if not np.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {seconds}")
    return seconds


class NoStragglers(StragglerModel):
    """Every worker is on time."""

    def action(self, worker: int, round_index: int) -> Action:
        return _IDLE

    def __repr__(self) -> str:
        return "NoStragglers()"


class FixedDelay(StragglerModel):
    """The given workers sleep ``seconds`` before computing, in ``rounds`` (default: all)."""

    def __init__(
        self, workers: Sequence[int], seconds: float, *, rounds: Iterable[int] | None = None
    ):
        self.workers = frozenset(int(w) for w in workers)
        self.seconds = _check_seconds(seconds)
        self.rounds = _check_rounds(rounds)

    def action(self, worker: int, round_index: int) -> Action:
        if worker in self.workers and (self.rounds is None or round_index in self.rounds):
            return Action(delay=self.seconds)
        return _IDLE

    def __repr__(self) -> str:
        return (
            f"FixedDelay(workers={sorted(self.workers)}, seconds={self.seconds}"
            f"{_rounds_repr(self.rounds)})"
        )


class Crash(StragglerModel):
    """The given workers die mid-round in ``rounds`` (default: every round they are asked)."""

    def __init__(self, workers: Sequence[int], *, rounds: Iterable[int] | None = None):
        self.workers = frozenset(int(w) for w in workers)
        self.rounds = _check_rounds(rounds)

    def action(self, worker: int, round_index: int) -> Action:
        if worker in self.workers and (self.rounds is None or round_index in self.rounds):
            return Action(crash=True)
        return _IDLE

    def __repr__(self) -> str:
        return f"Crash(workers={sorted(self.workers)}{_rounds_repr(self.rounds)})"


class ShiftedExponential(StragglerModel):
    """Every worker sleeps ``shift + Exp(mean=scale)`` seconds, drawn per worker and round.

    This is the latency model of the coded-computation literature (a minimum
    service time plus an exponential tail).
    """

    def __init__(self, shift: float = 0.0, scale: float = 0.1, *, seed: int = 0):
        self.shift = _check_seconds(shift, "shift")
        self.scale = _check_seconds(scale, "scale")
        self.seed = _check_seed(seed)

    def action(self, worker: int, round_index: int) -> Action:
        rng = np.random.default_rng(
            [self.seed, _STREAM_SHIFTED_EXPONENTIAL, int(round_index), int(worker)]
        )
        return Action(delay=self.shift + float(rng.exponential(self.scale)))

    def __repr__(self) -> str:
        return f"ShiftedExponential(shift={self.shift}, scale={self.scale}, seed={self.seed})"


class Bernoulli(StragglerModel):
    """Each worker, independently each round, sleeps ``seconds`` with probability ``p``."""

    def __init__(self, p: float, seconds: float, *, seed: int = 0):
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        self.p = p
        self.seconds = _check_seconds(seconds)
        self.seed = _check_seed(seed)

    def action(self, worker: int, round_index: int) -> Action:
        rng = np.random.default_rng([self.seed, _STREAM_BERNOULLI, int(round_index), int(worker)])
        return Action(delay=self.seconds) if rng.random() < self.p else _IDLE

    def __repr__(self) -> str:
        return f"Bernoulli(p={self.p}, seconds={self.seconds}, seed={self.seed})"


class OnWorkers(StragglerModel):
    """``model`` on the given workers only; the others are on time.

    Turns a model that hits every worker (:class:`ShiftedExponential`,
    :class:`Bernoulli`) into one that hits a chosen straggler set, so that
    "j stragglers under shifted-exponential delays" means j workers.

    Examples
    --------
    >>> m = OnWorkers(ShiftedExponential(shift=1.0, scale=0.0), workers=[2])
    >>> m.action(2, 0), m.action(0, 0)
    (Action(delay=1.0, crash=False), Action(delay=0.0, crash=False))
    """

    def __init__(self, model: StragglerModel, workers: Sequence[int]):
        if not isinstance(model, StragglerModel):
            raise TypeError(f"model must be a StragglerModel, got {type(model).__name__}")
        self.model = model
        self.workers = frozenset(int(w) for w in workers)

    def action(self, worker: int, round_index: int) -> Action:
        return self.model.action(worker, round_index) if worker in self.workers else _IDLE

    def __repr__(self) -> str:
        return f"{self.model!r} on workers {sorted(self.workers)}"


class _Combined(StragglerModel):
    def __init__(self, models: Sequence[StragglerModel]):
        self.models = tuple(models)

    def action(self, worker: int, round_index: int) -> Action:
        acts = [m.action(worker, round_index) for m in self.models]
        return Action(
            delay=max((a.delay for a in acts), default=0.0), crash=any(a.crash for a in acts)
        )

    def __repr__(self) -> str:
        return "combine(" + ", ".join(map(repr, self.models)) + ")"


def combine(*models: StragglerModel) -> StragglerModel:
    """A model whose delay is the largest of ``models`` and that crashes when any of them does."""
    return _Combined(models)
