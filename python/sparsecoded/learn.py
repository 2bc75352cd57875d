"""Training and solver workloads that drive a coded operator round after round.

Each function takes anything with ``A @ x`` and ``A.T @ y`` (a
:class:`~sparsecoded.CodedMatVec`, a scipy sparse array, a
:class:`scipy.sparse.linalg.LinearOperator`), so the same call on the plain
matrix is the oracle for the coded run: gradient descent is deterministic, and
the coded products are exact to rounding, so both runs follow the same path.

- :func:`logistic_regression`: gradient descent on the L2-regularised
  logistic loss; one forward round (``A @ w``) and one transpose round
  (``A.T @ r``) per step.
- :func:`least_squares`: gradient descent on ``|A w - b|^2 / 2m``.
- :func:`pagerank`: power iteration on a column-stochastic transition matrix.
- :func:`planted_labels`: +-1 labels drawn from a seeded logistic model, for
  data sets that carry none (a9a and news20 in ``shared/data`` are shipped
  without labels).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "Trace",
    "least_squares",
    "logistic_regression",
    "pagerank",
    "planted_labels",
    "spectral_norm",
    "transition_matrix",
]


@dataclass
class Trace:
    """What an iterative run did: the iterate, and its loss and wall time per step."""

    x: np.ndarray
    #: loss (or residual) before each step, and after the last one
    losses: list[float] = field(default_factory=list)
    #: wall seconds from the start when each loss was known
    seconds: list[float] = field(default_factory=list)
    iterations: int = 0
    #: wall seconds until the loss first reached ``target`` (None: never)
    time_to_target: float | None = None
    #: fraction of correctly classified samples (classification only)
    accuracy: float | None = None


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_nonnegative(name: str, value: Any) -> float:
    v = float(value)
    if not v >= 0 or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _shape(A: Any) -> tuple[int, int]:
    shape = getattr(A, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"expected a 2-D matrix or operator, got {type(A).__name__}")
    return int(shape[0]), int(shape[1])


def spectral_norm(A: Any, *, iterations: int = 30, seed: int = 0) -> float:
    """An estimate of ``|A|_2`` by power iteration on ``A.T A`` (two products per step).

    A lower estimate that converges from below; 30 steps give a few digits on
    the matrices here.  Used for the gradient step ``1 / L``.
    """
    _, c = _shape(A)
    v = np.random.default_rng(seed).standard_normal(c)
    v /= np.linalg.norm(v)
    sigma = 0.0
    for _ in range(_check_positive_int("iterations", iterations)):
        u = A.T @ (A @ v)
        norm = float(np.linalg.norm(u))
        if norm == 0.0:
            return 0.0
        sigma = math.sqrt(norm)
        v = u / norm
    return sigma


def planted_labels(A: Any, *, seed: int = 0, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """+-1 labels from a seeded logistic model: ``P(y = 1) = sigmoid(scale * a_i . w*)``.

    ``w*`` is standard normal, scaled so that the margins ``A w*`` have unit
    standard deviation (times ``scale``).  Returns ``(labels, w_star)``.
    """
    rng = np.random.default_rng(seed)
    _, c = _shape(A)
    w = rng.standard_normal(c)
    z = np.asarray(A @ w, dtype=np.float64)
    spread = float(np.std(z)) or 1.0
    w *= scale / spread
    z *= scale / spread
    labels = np.where(rng.random(z.shape[0]) < _sigmoid(z), 1.0, -1.0)
    return labels, w


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _logistic_loss(margins: np.ndarray) -> float:
    """mean log(1 + exp(-margin)), computed without overflow."""
    return float(np.mean(np.logaddexp(0.0, -margins)))


def logistic_regression(
    A: Any,
    labels: Any,
    *,
    l2: float = 1e-4,
    step: float | None = None,
    iterations: int = 100,
    target: float | None = None,
    w0: Any = None,
    callback: Callable[[int, float, np.ndarray], None] | None = None,
) -> Trace:
    """Gradient descent on ``mean log(1 + exp(-y_i a_i . w)) + l2 |w|^2 / 2``.

    Parameters
    ----------
    A : matrix or operator (m, c)
        The features; each step costs one ``A @ w`` and one ``A.T @ r``.
    labels : array (m,)
        +-1 (0/1 are mapped to -1/+1).
    l2 : float
        Ridge weight (>= 0).
    step : float, optional
        The step; default ``1 / L`` with ``L = |A|_2^2 / (4 m) + l2``, the
        gradient's Lipschitz constant (|A|_2 by :func:`spectral_norm`).
    iterations : int
        Steps to take.
    target : float, optional
        Record ``time_to_target`` when the loss first reaches it.
    w0 : array (c,), optional
        Start (default zeros).
    callback : callable, optional
        ``callback(step_index, loss, w)`` before each step.

    Returns
    -------
    Trace
        ``x`` is the last ``w``; ``losses[i]`` the loss at step ``i``;
        ``accuracy`` of ``sign(A w)`` against the labels.
    """
    m, c = _shape(A)
    y = np.asarray(labels, dtype=np.float64).ravel()
    if y.shape != (m,):
        raise ValueError(f"labels has {y.shape[0]} entries, expected A.shape[0] = {m}")
    if set(np.unique(y)) <= {0.0, 1.0}:
        y = 2.0 * y - 1.0
    if not set(np.unique(y)) <= {-1.0, 1.0}:
        raise ValueError("labels must be +-1 (or 0/1)")
    l2 = _check_nonnegative("l2", l2)
    iterations = _check_positive_int("iterations", iterations)
    if step is None:
        lipschitz = spectral_norm(A) ** 2 / (4.0 * m) + l2
        step = 1.0 / lipschitz if lipschitz > 0 else 1.0
    step = float(step)
    if not step > 0 or not math.isfinite(step):
        raise ValueError(f"step must be a finite number > 0, got {step!r}")
    w = np.zeros(c) if w0 is None else np.array(w0, dtype=np.float64).ravel()
    if w.shape != (c,):
        raise ValueError(f"w0 has {w.shape[0]} entries, expected A.shape[1] = {c}")
    trace = Trace(x=w)
    t0 = time.perf_counter()

    def record(loss: float) -> None:
        now = time.perf_counter() - t0
        trace.losses.append(loss)
        trace.seconds.append(now)
        if target is not None and trace.time_to_target is None and loss <= target:
            trace.time_to_target = now

    for i in range(iterations):
        z = np.asarray(A @ w, dtype=np.float64)
        margins = y * z
        loss = _logistic_loss(margins) + 0.5 * l2 * float(w @ w)
        record(loss)
        if callback is not None:
            callback(i, loss, w)
        r = -y * _sigmoid(-margins) / m
        grad = np.asarray(A.T @ r, dtype=np.float64) + l2 * w
        w = w - step * grad
    z = np.asarray(A @ w, dtype=np.float64)
    record(_logistic_loss(y * z) + 0.5 * l2 * float(w @ w))
    trace.x = w
    trace.iterations = iterations
    # a margin at rounding level (an empty row: exactly 0 in one run, +-1e-17 in
    # another) is a tie, predicted +1 in every run
    tie = 1e-9 * float(np.abs(z).max(initial=0.0))
    trace.accuracy = float(np.mean(np.where(z >= -tie, 1.0, -1.0) == y))
    return trace


def least_squares(
    A: Any,
    b: Any,
    *,
    step: float | None = None,
    iterations: int = 100,
    target: float | None = None,
    x0: Any = None,
) -> Trace:
    """Gradient descent on ``|A x - b|^2 / (2 m)``; ``losses`` are that objective."""
    m, c = _shape(A)
    rhs = np.asarray(b, dtype=np.float64).ravel()
    if rhs.shape != (m,):
        raise ValueError(f"b has {rhs.shape[0]} entries, expected A.shape[0] = {m}")
    iterations = _check_positive_int("iterations", iterations)
    if step is None:
        lipschitz = spectral_norm(A) ** 2 / m
        step = 1.0 / lipschitz if lipschitz > 0 else 1.0
    x = np.zeros(c) if x0 is None else np.array(x0, dtype=np.float64).ravel()
    trace = Trace(x=x)
    t0 = time.perf_counter()
    for _ in range(iterations):
        r = np.asarray(A @ x, dtype=np.float64) - rhs
        loss = 0.5 * float(r @ r) / m
        now = time.perf_counter() - t0
        trace.losses.append(loss)
        trace.seconds.append(now)
        if target is not None and trace.time_to_target is None and loss <= target:
            trace.time_to_target = now
        x = x - float(step) * np.asarray(A.T @ r, dtype=np.float64) / m
    r = np.asarray(A @ x, dtype=np.float64) - rhs
    trace.losses.append(0.5 * float(r @ r) / m)
    trace.seconds.append(time.perf_counter() - t0)
    trace.x = x
    trace.iterations = iterations
    return trace


def transition_matrix(adjacency: Any) -> tuple[sp.csr_array, np.ndarray]:
    """The column-stochastic matrix of a directed graph, and its dangling nodes.

    ``adjacency[i, j] != 0`` is an edge i -> j.  Column ``i`` of the result
    spreads node i's rank evenly over its out-links; ``dangling[i]`` is True
    for a node with none (its rank is spread over every node by
    :func:`pagerank`).
    """
    G = sp.csr_array(adjacency, dtype=np.float64)
    if G.shape[0] != G.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {G.shape}")
    G.sum_duplicates()
    G.eliminate_zeros()  # a stored zero (or cancelling duplicates) is no edge
    G.data[:] = 1.0
    out = np.asarray(G.sum(axis=1)).ravel()
    dangling = out == 0
    inv = np.divide(1.0, out, out=np.zeros_like(out), where=~dangling)
    M = sp.csr_array((sp.diags_array(inv) @ G).T)
    return M, dangling


def pagerank(
    M: Any,
    dangling: Any = None,
    *,
    damping: float = 0.85,
    tol: float = 1e-10,
    max_iterations: int = 200,
) -> Trace:
    """PageRank by power iteration on a column-stochastic ``M`` (one ``M @ x`` per step).

    ``x <- d M x + (d * dangling . x + 1 - d) / n``; stops when the 1-norm
    change is below ``tol``.  ``losses`` are those changes.
    """
    n, c = _shape(M)
    if n != c:
        raise ValueError(f"M must be square, got shape {(n, c)}")
    if not 0 < damping < 1:
        raise ValueError(f"damping must be in (0, 1), got {damping!r}")
    mask = np.zeros(n, dtype=bool) if dangling is None else np.asarray(dangling, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"dangling has {mask.shape[0]} entries, expected {n}")
    x = np.full(n, 1.0 / n)
    trace = Trace(x=x)
    t0 = time.perf_counter()
    for i in range(_check_positive_int("max_iterations", max_iterations)):
        nxt = damping * np.asarray(M @ x, dtype=np.float64)
        nxt += (damping * float(x[mask].sum()) + 1.0 - damping) / n
        change = float(np.abs(nxt - x).sum())
        x = nxt
        trace.losses.append(change)
        trace.seconds.append(time.perf_counter() - t0)
        trace.iterations = i + 1
        if change < tol:
            trace.time_to_target = trace.seconds[-1]
            break
    trace.x = x
    return trace
