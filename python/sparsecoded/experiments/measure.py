"""How the experiments measure: per-worker timing, pools, rounds and THE straggler sweep.

- :func:`measure_workers` (and ``_mm``) builds each worker's coded block(s)
  and times its product in this process, one worker at a time.
- :func:`open_pool` gives the pool the flags ask for (InlinePool, LocalPool,
  a Dask LocalCluster).
- :func:`straggler_sweep` is the one scheme x straggler-model x count loop
  (``completion`` and ``heterogeneous``): each count of stragglers under each
  model, rounds on the pool, and, in simulated mode, every round replayed
  from the measured per-block CPU times by :func:`replay_cpu`, which runs on
  :func:`sparsecoded.pools.inline.virtual_clock` and ends the round by
  :meth:`sparsecoded.decode.Decoder.enough`, as the pools and the jobs do.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import kernels
from ..decode import Decoder
from ..errors import NotEnoughWorkers
from ..pools.base import compute
from ..pools.inline import virtual_clock
from ..stragglers import Crash, FixedDelay, OnWorkers, ShiftedExponential, StragglerModel
from .record import MODE_LIVE, MODE_SIMULATED

MODELS = ("fixed", "shiftexp", "crash")


def add_pool_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("backend")
    g.add_argument("--live", action="store_true", help="run rounds on LocalPool processes")
    g.add_argument("--dask", action="store_true", help="run rounds on a Dask LocalCluster")
    g.add_argument(
        "--timeout", type=float, default=60.0, help="pool round timeout, seconds (default 60)"
    )


def add_straggler_arguments(parser: argparse.ArgumentParser, *, models: bool = True) -> None:
    g = parser.add_argument_group("stragglers")
    if models:
        g.add_argument(
            "--models",
            default="fixed,shiftexp,crash",
            help="straggler models: fixed (delay), shiftexp (shifted exponential), crash",
        )
    g.add_argument(
        "--delay",
        type=float,
        default=0.5,
        help="straggler delay / exponential shift, seconds (default 0.5)",
    )


# ----------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any], reps: int) -> tuple[list[float], list[float]]:
    """CPU seconds of this thread and wall seconds of ``reps`` calls of ``fn``, after a warm-up."""
    fn()  # warm caches and the first-call path
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall


def _compute_each(op: str, payloads: Sequence[Any], operand: Any) -> list[Any]:
    return [compute(op, p, operand) for p in payloads]


def _times_summary(
    times: list[float | None], other: list[float | None], nnz: list[int], clock: str, reps: int
) -> dict[str, Any]:
    active = [t for t in times if t is not None]
    active_nnz = [z for z, t in zip(nnz, times, strict=True) if t is not None]
    return {
        "workers_with_work": len(active),
        "worker_time_median": statistics.median(active),
        "worker_time_min": min(active),
        "worker_time_max": max(active),
        "worker_times": times,
        "clock": clock,
        "worker_times_other_clock": other,
        "worker_time_median_other_clock": statistics.median([t for t in other if t is not None]),
        "worker_nnz": nnz,
        "nnz_median": statistics.median(active_nnz),
        "reps": reps,
        "mode": MODE_SIMULATED,
    }


def measure_workers(
    A: sp.csr_array,
    code: Any,
    x: np.ndarray,
    reps: int,
    tick: Callable[[], None] | None = None,
    clock: str = "cpu",
) -> dict[str, Any]:
    """Build each device's coded block(s) and time its products together, one device at a time.

    Blocks are built one device at a time and dropped after timing, so even
    dense codes on large inputs need only one coded block in memory.  With
    ``clock="cpu"`` the figure is the CPU time of this thread (the kernel runs
    single-threaded in it), which time slicing on a busy machine does not
    inflate; ``"wall"`` is elapsed time.  Both are recorded, and each block's
    own CPU time (``row_cpu_times``, for :func:`replay_cpu`).
    """
    E = sp.csr_array(code.encoding)
    owner = np.asarray(code.owner)
    weights = np.diff(E.indptr)
    n_dev = int(code.n_workers)
    times: list[float | None] = [None] * n_dev
    other: list[float | None] = [None] * n_dev
    nnz: list[int] = [0] * n_dev
    row_cpu: list[float | None] = [None] * E.shape[0]
    encode = 0.0
    for w in range(n_dev):
        rows = [int(r) for r in np.flatnonzero(owner == w) if weights[r] > 0]
        if rows:
            t0 = time.perf_counter()
            blocks = kernels.encode_row_blocks(A, E[rows])
            encode += time.perf_counter() - t0
            cpu, wall = timed(partial(_compute_each, "matvec", blocks, x), reps)
            times[w] = statistics.median(cpu if clock == "cpu" else wall)
            other[w] = statistics.median(wall if clock == "cpu" else cpu)
            if len(rows) == 1:
                row_cpu[rows[0]] = statistics.median(cpu)
            else:  # a device of several blocks: each block's own time, for replays
                for r, b in zip(rows, blocks, strict=True):
                    row_cpu[r] = statistics.median(timed(partial(compute, "matvec", b, x), reps)[0])
            nnz[w] = int(sum(b.nnz for b in blocks))
            del blocks
        if tick:
            tick()
    out = {
        "scheme": getattr(code, "scheme", "custom"),
        "weight": int(code.weight),
        "stragglers": int(code.stragglers),
        **_times_summary(times, other, nnz, clock, reps),
        **_device_summary(times, nnz),
        "blocks": int(E.shape[1]),
        "device_rows": [int(v) for v in np.bincount(owner, minlength=n_dev)],
        "device_weight": [int(v) for v in np.bincount(owner, weights=weights, minlength=n_dev)],
        "row_cpu_times": row_cpu,
        "encode_seconds_sum": encode,
    }
    if hasattr(code, "device_load"):
        load = code.device_load(A.nnz / max(1, A.shape[0] * A.shape[1]))
        out["device_load"] = [float(v) for v in load]
        out["device_load_max"] = float(np.max(load))
    out["applicable"] = True
    return out


def _slot_index(code: Any, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first row, device, row -> slot)`` of the distinct slots on one side.

    The slot order is :meth:`MMCode.slots`'s (sorted slot ids), so slot ``j``
    here is row ``j`` of ``code.slots(side)[0]``.
    """
    n_rows = int(code.encoding_a.shape[0])
    ids = getattr(code, "slot_a" if side == "a" else "slot_b", None)
    ids = np.arange(n_rows) if ids is None else np.asarray(ids)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    owner = code.row_owner() if hasattr(code, "row_owner") else np.arange(n_rows)
    return first, np.asarray(owner)[first], inverse.reshape(-1)


def measure_workers_mm(
    A: sp.csr_array,
    B: sp.csr_array,
    code: Any,
    reps: int,
    tick: Callable[[], None] | None = None,
    clock: str = "cpu",
) -> dict[str, Any]:
    """Matrix-matrix version of :func:`measure_workers`, per *device*.

    Device ``d`` stores its distinct coded A- and B-slots (``code.slots``),
    each encoded once, and computes every product the code gives it
    (``code.row_owner() == d``: on a finer partition each of its A-slots times
    each B-slot); those products are timed together, one device at a time.
    ``worker_nnz`` are the nonzeros of the device's distinct slots (A and B),
    ``worker_times`` its compute time; ``device_nnz_a`` / ``_b`` split the
    former.  Products with an empty factor are skipped (uncoded idle devices).
    """
    Ea, Eb = sp.csr_array(code.encoding_a), sp.csr_array(code.encoding_b)
    first_a, dev_a, slot_of_a = _slot_index(code, "a")
    first_b, dev_b, slot_of_b = _slot_index(code, "b")
    wa, wb = np.diff(Ea.indptr), np.diff(Eb.indptr)
    owner = code.row_owner() if hasattr(code, "row_owner") else np.arange(Ea.shape[0])
    owner = np.asarray(owner)
    Bt = sp.csr_array(B.T)
    n = int(code.n_workers)
    times: list[float | None] = [None] * n
    other: list[float | None] = [None] * n
    nnz: list[int] = [0] * n
    nnz_a: list[int] = [0] * n
    nnz_b: list[int] = [0] * n
    out_nnz: list[int] = [0] * n
    products: list[int] = [0] * n
    slots_a: list[int] = [0] * n
    slots_b: list[int] = [0] * n
    grouped: list[float | None] = [None] * n
    encode = 0.0
    for d in range(n):
        mine_a = np.flatnonzero(dev_a == d)  # this device's slots (global slot numbers)
        mine_b = np.flatnonzero(dev_b == d)
        rows = [int(r) for r in np.flatnonzero(owner == d) if wa[r] and wb[r]]
        slots_a[d], slots_b[d] = int(mine_a.size), int(mine_b.size)
        if mine_a.size or mine_b.size:
            t0 = time.perf_counter()
            ca = (
                kernels.encode_row_blocks(A, sp.csr_array(Ea[first_a[mine_a]]))
                if mine_a.size
                else []
            )
            cbt = (
                kernels.encode_row_blocks(Bt, sp.csr_array(Eb[first_b[mine_b]]))
                if mine_b.size
                else []
            )
            cb = [sp.csr_array(bt.T) for bt in cbt]
            encode += time.perf_counter() - t0
            nnz_a[d] = int(sum(b.nnz for b in ca))
            nnz_b[d] = int(sum(b.nnz for b in cb))
            nnz[d] = nnz_a[d] + nnz_b[d]
            where_a = {int(g): i for i, g in enumerate(mine_a)}
            where_b = {int(g): i for i, g in enumerate(mine_b)}
            pairs = [(ca[where_a[slot_of_a[r]]], cb[where_b[slot_of_b[r]]]) for r in rows]
            if pairs:
                res = _compute_each("matmat", pairs, None)
                out_nnz[d] = int(
                    sum(x.nnz if sp.issparse(x) else int(np.count_nonzero(x)) for x in res)
                )
                del res
                cpu, wall = timed(partial(_compute_each, "matmat", pairs, None), reps)
                times[d] = statistics.median(cpu if clock == "cpu" else wall)
                other[d] = statistics.median(wall if clock == "cpu" else cpu)
                products[d] = len(pairs)
                fused = _grouped_pairs(pairs, rows, slot_of_a, slot_of_b)
                if len(fused) < len(pairs):
                    cpu, wall = timed(partial(_compute_each, "matmat", fused, None), reps)
                    grouped[d] = statistics.median(cpu if clock == "cpu" else wall)
                    del fused
                else:
                    grouped[d] = times[d]
            del ca, cb, cbt, pairs
        if tick:
            tick()
    load_a, load_b = _mm_device_load(code, A, B)
    return {
        "scheme": getattr(code, "scheme", "custom"),
        "applicable": True,
        "weight": int(code.weight_a) * int(code.weight_b),
        "weight_a": int(code.weight_a),
        "weight_b": int(code.weight_b),
        "stragglers": int(code.stragglers),
        "blocks": [int(Ea.shape[1]), int(Eb.shape[1])],
        **_times_summary(times, other, nnz, clock, reps),
        **_device_summary(times, nnz),
        "device_nnz_a": nnz_a,
        "device_nnz_b": nnz_b,
        "device_weight_a": _device_weight(Ea, first_a, dev_a, n),
        "device_weight_b": _device_weight(Eb, first_b, dev_b, n),
        "device_products": products,
        "device_slots_a": slots_a,
        "device_slots_b": slots_b,
        "device_load_a": load_a,
        "device_load_b": load_b,
        "device_load_max": max(x + y for x, y in zip(load_a, load_b, strict=True)),
        "worker_output_nnz": out_nnz,
        "encode_seconds_sum": encode,
        "device_time_grouped": grouped,
        "device_time_grouped_median": statistics.median([t for t in grouped if t is not None]),
        "device_time_grouped_max": max(t for t in grouped if t is not None),
    }


def _grouped_pairs(
    pairs: list[tuple[Any, Any]], rows: list[int], slot_a: np.ndarray, slot_b: np.ndarray
) -> list[tuple[Any, Any]]:
    """The same products in fewer calls: the B-slots that share an A-slot side by side.

    ``A_i [B_1 .. B_t]`` computes the t products ``A_i B_j`` in one pass over
    ``A_i`` (the B-slots stored next to each other); likewise ``[A_1; ..] B_j``
    when the A side is the fine one.  The side that leaves fewer calls is used.
    """
    by_a: dict[int, list[int]] = {}
    by_b: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        by_a.setdefault(int(slot_a[r]), []).append(i)
        by_b.setdefault(int(slot_b[r]), []).append(i)
    if len(by_a) <= len(by_b):
        return [
            (pairs[g[0]][0], sp.csr_array(sp.hstack([pairs[i][1] for i in g], format="csr")))
            for g in by_a.values()
        ]
    return [
        (sp.csr_array(sp.vstack([pairs[i][0] for i in g], format="csr")), pairs[g[0]][1])
        for g in by_b.values()
    ]


def _device_weight(E: sp.csr_array, first: np.ndarray, dev: np.ndarray, n: int) -> list[int]:
    """Total weight of each device's distinct slots (sub-blocks mixed, summed)."""
    w = np.diff(E.indptr)[first]
    return [int(v) for v in np.bincount(dev, weights=w, minlength=n)]


def _mm_device_load(code: Any, A: sp.csr_array, B: sp.csr_array) -> tuple[list[float], list[float]]:
    """``code.device_load`` at A's and B's densities (fractions of nnz(A), nnz(B))."""
    if not hasattr(code, "device_load"):
        return [], []
    pa = A.nnz / max(1, A.shape[0] * A.shape[1])
    pb = B.nnz / max(1, B.shape[0] * B.shape[1])
    x, y = code.device_load(pa, pb)
    return [float(v) for v in x], [float(v) for v in y]


def _device_summary(times: list[float | None], nnz: list[int]) -> dict[str, Any]:
    """Per-device medians and maxima: nonzeros over every device, time over those with work."""
    active = [t for t in times if t is not None]
    return {
        "devices": len(times),
        "device_nnz": list(nnz),
        "device_nnz_median": statistics.median(nnz),
        "device_nnz_max": max(nnz),
        "device_time_median": statistics.median(active),
        "device_time_max": max(active),
    }


# ----------------------------------------------------------------------------- pools and rounds


@contextlib.contextmanager
def open_pool(
    n: int, *, live: bool = False, dask: bool = False, timeout: float = 60.0
) -> Iterator[tuple[Any, str, str]]:
    """(pool, mode, backend name): InlinePool, LocalPool (``live``) or a Dask LocalCluster."""
    if live and dask:
        raise ValueError("--live and --dask are exclusive")
    if dask:
        from distributed import Client, LocalCluster

        from ..pools.dask import DaskPool

        with (
            LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cl,
            Client(cl) as client,
        ):
            pool = DaskPool(client, timeout=timeout)
            try:
                yield pool, MODE_LIVE, "DaskPool(LocalCluster)"
            finally:
                pool.close()
    elif live:
        from ..pools.local import LocalPool

        with LocalPool(n, timeout=timeout) as pool:
            yield pool, MODE_LIVE, "LocalPool"
    else:
        from ..pools.inline import InlinePool

        with InlinePool(n, timeout=timeout) as pool:
            yield pool, MODE_SIMULATED, "InlinePool"


def settle(pool: Any, timeout: float) -> None:
    """Let a Dask pool get back the workers a crash model killed, so the next run starts whole."""
    wait = getattr(pool, "wait_for_workers", None)
    if wait is not None:
        with contextlib.suppress(Exception):
            wait(timeout=timeout)


def run_round(op: Any, x: np.ndarray, y_ref: np.ndarray) -> dict[str, Any]:
    """One call of a coded MV job; the failure of a round is recorded, not raised."""
    t0 = time.perf_counter()
    try:
        y = op @ x
    except NotEnoughWorkers as exc:
        return {
            "ok": False,
            "error": str(exc),
            "error_type": type(exc).__name__,
            "wall_seconds": time.perf_counter() - t0,
        }
    wall = time.perf_counter() - t0
    rep = op.report
    err = float(np.linalg.norm(y - y_ref) / max(np.linalg.norm(y_ref), 1e-300))
    completion = rep.round_seconds + rep.decode_seconds
    return {
        "ok": True,
        "round_seconds": rep.round_seconds,
        "decode_seconds": rep.decode_seconds,
        "completion_seconds": completion,
        "wall_seconds": wall,
        "decode_share": rep.decode_seconds / completion if completion > 0 else 0.0,
        "rel_error": err,
        "answered": list(rep.answered),
        "cancelled": list(rep.cancelled),
        "dead": list(rep.dead),
        "condition": rep.condition,
        "decode_cached": rep.decode_cached,
        "compute_seconds": {str(k): v for k, v in rep.compute_seconds.items()},
        "mode": rep.mode,
        "round_index": rep.round_index,
    }


def inject(op: Any, model: StragglerModel | None) -> None:
    """Change the stragglers of a placed job: the blocks stay placed, only the injection changes."""
    op.stragglers = model


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rounds if r["ok"]]
    out: dict[str, Any] = {"rounds_ok": len(ok), "rounds_failed": len(rounds) - len(ok)}
    if ok:
        for key in ("completion_seconds", "round_seconds", "decode_seconds", "decode_share"):
            out[key + "_median"] = statistics.median(r[key] for r in ok)
        out["rel_error_max"] = max(r["rel_error"] for r in ok)
    else:
        out["completion_seconds_median"] = None
        out["error"] = rounds[0]["error"] if rounds else None
    return out


# ----------------------------------------------------------------------------- stragglers


def straggler_model(kind: str, workers: Sequence[int], delay: float, seed: int) -> StragglerModel:
    """The model ``kind`` (fixed, shiftexp, crash) on ``workers`` only."""
    if kind == "fixed":
        return FixedDelay(workers=workers, seconds=delay)
    if kind == "shiftexp":
        return OnWorkers(ShiftedExponential(shift=delay, scale=delay / 2, seed=seed), workers)
    if kind == "crash":
        return Crash(workers=workers)
    raise ValueError(f"unknown straggler model {kind!r}, expected fixed, shiftexp or crash")


def model_names(models: Any) -> list[str]:
    from .inputs import names

    chosen = names(models)
    unknown = [m for m in chosen if m not in MODELS]
    if unknown or not chosen:
        raise ValueError(f"--models must name some of {', '.join(MODELS)}; got {models!r}")
    return chosen


def straggler_order(n: int, k: int, seed: int) -> list[int]:
    """Who straggles first: the first k workers (every scheme, uncoded too, uses those)."""
    rng = np.random.default_rng([seed, 2])
    first = rng.permutation(k).tolist()
    return first + rng.permutation(np.arange(k, n)).tolist()


def replay_cpu(
    row_times: Sequence[float | None],
    owner: Sequence[int] | np.ndarray,
    model: StragglerModel | None,
    decoder: Decoder,
    n_rounds: int,
    rounds: list[dict[str, Any]],
) -> dict[str, Any]:
    """Completion from per-block CPU times: the round replayed without the machine's noise.

    Device ``d`` sleeps its injected delay, then computes its blocks one after
    another in row order (each taking its CPU time measured alone) and sends
    each when done, as the pools do (:func:`~sparsecoded.pools.inline.virtual_clock`);
    results are taken in that order until :meth:`Decoder.enough` accepts
    them, as the job does, with every result a live device can send counted
    as the total.  The decode time of the real rounds is added.
    """
    owner = [int(o) for o in owner]
    n_dev = max(owner) + 1
    slot_row: dict[tuple[int, int], int] = {}
    durations: list[list[float | None]] = [[] for _ in range(n_dev)]
    for row, t in enumerate(row_times):
        d = owner[row]
        slot_row[(d, len(durations[d]))] = row
        durations[d].append(t)
    times: list[float | None] = []
    # the same round indices as the real rounds, so random models draw the same delays
    indices = [q["round_index"] for q in rounds if q.get("round_index") is not None]
    for r in indices if len(indices) == n_rounds else range(n_rounds):
        actions = model.plan(n_dev, r) if model is not None else None
        live = sum(
            t is not None
            for d, slots in enumerate(durations)
            if actions is None or not actions[d].crash
            for t in slots
        )

        def enough(order: Sequence[tuple[int, int]], live: int = live) -> bool:
            return decoder.enough([slot_row[key] for key in order], live)

        times.append(virtual_clock(durations, actions, enough).decided_at)
    ok = [t for t in times if t is not None]
    decode = [q["decode_seconds"] for q in rounds if q["ok"]]
    dec = statistics.median(decode) if decode else 0.0
    return {
        "cpu_replay_round_seconds": times,
        "cpu_replay_completion_seconds_median": statistics.median(ok) + dec if ok else None,
        "cpu_replay_decode_share": dec / (statistics.median(ok) + dec) if ok else None,
    }


def straggler_sweep(
    op: Any,
    pool: Any,
    *,
    mode: str,
    x: np.ndarray,
    y_ref: np.ndarray,
    models: Sequence[str],
    counts: Sequence[int],
    slow: Callable[[int], list[int]],
    tolerated: int,
    delay: float,
    seed: int,
    rounds: int,
    warmup: int,
    timeout: float,
    row_times: Sequence[float | None] | None,
    owner: Sequence[int] | np.ndarray,
    decoder: Decoder | None,
    bar: Any,
    label: str,
    who: str = "straggler_workers",
    annotate: Callable[[Any], dict[str, Any]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """THE scheme x straggler-model x count loop, for one placed coded job ``op``.

    For each model and each count ``j`` in ``counts``, the devices ``slow(j)``
    straggle under that model (none at ``j = 0``, which is run once and shared
    by every model); ``warmup`` untimed then ``rounds`` timed rounds run on
    ``pool`` with the blocks left placed.  With ``row_times`` (simulated mode)
    each setting is also replayed from them (:func:`replay_cpu`).
    ``annotate(op)`` adds figures to each successful round.  Returns the rows
    per model, each with its ratio to the no-straggler row.
    """
    per_model: dict[str, list[dict[str, Any]]] = {}
    for model_name in models:
        rows: list[dict[str, Any]] = []
        for j in counts:
            if j == 0 and model_name != models[0]:
                rows.append(dict(per_model[models[0]][0]))  # the same no-straggler runs
                bar.update(rounds)
                continue
            bar.set_postfix_str(f"{label} {model_name} {j}")
            devices = slow(j)
            model = straggler_model(model_name, devices, delay, seed) if j else None
            settle(pool, timeout)
            inject(op, model)
            warm = [run_round(op, x, y_ref) for _ in range(warmup)]
            timed_rounds = []
            for _ in range(rounds):
                r = run_round(op, x, y_ref)
                if r["ok"] and annotate is not None:
                    r.update(annotate(op))
                timed_rounds.append(r)
                bar.update(1)
            row = {
                "stragglers": j,
                who: devices,
                "beyond_tolerance": j > tolerated,
                "model": repr(model) if model else "none",
                **summarise(timed_rounds),
                "rounds": timed_rounds,
                "warmup_rounds": warm,
                "mode": mode,
            }
            if row_times is not None and decoder is not None:
                row.update(replay_cpu(row_times, owner, model, decoder, rounds, timed_rounds))
            rows.append(row)
        for key in ("completion_seconds_median", "cpu_replay_completion_seconds_median"):
            base = rows[0].get(key)
            name = "ratio_to_no_stragglers" + ("_cpu_replay" if "cpu" in key else "")
            for r in rows:
                c = r.get(key)
                r[name] = c / base if (c is not None and base) else None
        per_model[model_name] = rows
    return per_model
