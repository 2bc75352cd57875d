"""What runs inside the Dask worker processes for :class:`~sparsecoded.pools.dask.DaskPool`.

``mode="tasks"``: :func:`slot_task` computes one (worker, slot) of a round,
with the per-process cancel flags below (:func:`cancel_rounds`, run on the
worker through ``Client.run``).  ``mode="actors"``: one :class:`Device` actor
per (job, worker) holds the placed payloads and serves the round's calls on
the worker's event loop.  State here is per process: a restarted worker starts
empty, which is right.  Payloads arrive checked (``place_payloads``) and run
through :func:`~sparsecoded.pools.base.compute_placed`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ..base import compute_placed

#: exit status of a worker told to crash (any non-zero status: the nanny restarts it)
CRASH_EXIT_STATUS = 75
#: longest a waiting task sleeps between looks at the cancellation flag
_SLICE = 0.05

_cond = threading.Condition()
#: pool token -> highest round of that pool that has been cancelled
_cancelled: dict[str, int] = {}
#: (pool token, round, worker) -> number of that worker's slots finished
_progress: dict[tuple[str, int, int], int] = {}


def _is_cancelled(token: str, round_index: int) -> bool:
    return _cancelled.get(token, -1) >= round_index


def _wait_until(token: str, round_index: int, ready: Callable[[], bool], deadline: float) -> bool:
    """Sleep until ``ready()`` or ``deadline``; False when the round is cancelled first."""
    with _cond:
        while True:
            if _is_cancelled(token, round_index):
                return False
            if ready():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            _cond.wait(min(left, _SLICE))


def cancel_rounds(token: str, round_index: int) -> None:
    """Cancel rounds ``<= round_index`` of the pool ``token`` on this worker (runs on its loop)."""
    with _cond:
        if _cancelled.get(token, -1) < round_index:
            _cancelled[token] = round_index
        for key in [k for k in _progress if k[0] == token and k[1] <= round_index]:
            del _progress[key]
        _cond.notify_all()


def forget_pool(token: str) -> None:
    """Drop what this worker remembers of a closed pool."""
    with _cond:
        _cancelled.pop(token, None)
        for key in [k for k in _progress if k[0] == token]:
            del _progress[key]
        _cond.notify_all()


def slot_task(
    token: str,
    round_index: int,
    worker: int,
    slot: int,
    n_slots: int,
    op: str,
    payload: Any,
    operand: Any,
    delay: float,
    crash: bool,
    threads: int,
) -> tuple[Any, float, float] | None:
    """Compute one payload of one worker in one round; None when cancelled first.

    Slot 0 applies the injected straggler action; slot ``j > 0`` waits for
    slot ``j - 1`` of the same round on this worker (a device computes its
    blocks one after another even when its Dask worker has several threads).
    """
    chain = (token, round_index, worker)
    if slot == 0:
        if crash:
            # the device dies mid-round: no clean shutdown, the nanny restarts the process
            os._exit(CRASH_EXIT_STATUS)
        if delay > 0 and not _wait_until(
            token, round_index, lambda: False, time.monotonic() + delay
        ):
            return None
    elif not _wait_until(token, round_index, lambda: _progress.get(chain, 0) >= slot, float("inf")):
        return None
    t0 = time.perf_counter()
    value = compute_placed(op, payload, operand, threads)
    seconds = time.perf_counter() - t0
    with _cond:
        if slot + 1 >= n_slots:
            _progress.pop(chain, None)
        elif not _is_cancelled(token, round_index):
            _progress[chain] = slot + 1
        _cond.notify_all()
    return value, seconds, time.time()


class _RoundOnDevice:
    def __init__(self) -> None:
        self.cancel = asyncio.Event()
        self.progress = asyncio.Condition()
        self.done = 0


_compute_thread: Any = None


def _compute_executor() -> Any:
    """One compute thread per worker process for the actor path: a device works serially."""
    global _compute_thread
    if _compute_thread is None:
        from concurrent.futures import ThreadPoolExecutor

        _compute_thread = ThreadPoolExecutor(1, thread_name_prefix="sparsecoded-compute")
    return _compute_thread


class Device:
    """Actor holding one job's payloads on one worker (``mode="actors"``).

    Its methods are coroutines, so they run on the worker's event loop: a
    ``cancel`` call is served at once even while a delay or a computation is
    under way, and the computation itself runs in a compute thread.
    """

    def __init__(self, threads: int, *payloads: Any):
        self.threads = threads
        self.payloads = list(payloads)
        self.rounds: dict[int, _RoundOnDevice] = {}
        self.cancelled = -1

    def _round(self, r: int) -> _RoundOnDevice:
        state = self.rounds.get(r)
        if state is None:
            state = self.rounds[r] = _RoundOnDevice()
            for old in [k for k in self.rounds if k < r - 8]:
                del self.rounds[old]
        return state

    async def compute(
        self, r: int, slot: int, op: str, operand: Any, delay: float, crash: bool
    ) -> tuple[Any, float, float] | None:
        state = self._round(r)
        if r <= self.cancelled:
            return None
        if slot == 0:
            if crash:
                os._exit(CRASH_EXIT_STATUS)
            if delay > 0:
                try:
                    await asyncio.wait_for(state.cancel.wait(), delay)
                    return None  # cancelled during the delay
                except asyncio.TimeoutError:
                    pass
        else:
            async with state.progress:
                await state.progress.wait_for(lambda: state.done >= slot or state.cancel.is_set())
        if state.cancel.is_set():
            return None
        t0 = time.perf_counter()
        value = await asyncio.get_running_loop().run_in_executor(
            _compute_executor(), compute_placed, op, self.payloads[slot], operand, self.threads
        )
        seconds = time.perf_counter() - t0
        async with state.progress:
            state.done = slot + 1
            state.progress.notify_all()
        return value, seconds, time.time()

    async def cancel(self, r: int) -> None:
        self.cancelled = max(self.cancelled, r)
        for k, state in list(self.rounds.items()):
            if k <= r:
                state.cancel.set()
                async with state.progress:
                    state.progress.notify_all()
