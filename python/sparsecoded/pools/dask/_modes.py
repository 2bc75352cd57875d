"""The two ways a DaskPool round reaches its workers: one strategy object per mode.

:class:`_Tasks` (``mode="tasks"``) submits a Dask task per (worker, slot),
pinned by name, through the scheduler; :class:`_Actors` (``mode="actors"``)
calls the :class:`~._worker.Device` actor holding the job's payloads on each
worker, directly.  Each says when a worker's placement is complete
(``fresh``), what placing adds (``hold``: the actor), how a round's calls go
out (``submit``, feeding one queue of arrivals ``((worker, slot), status,
value)``) and how the leftovers are cancelled (``finish``).  The round loop
itself is ``DaskPool._run_async``, the same for both.  A mode holds its pool
(``pool: DaskPool``, left untyped here: this module must not import pool.py,
which imports it).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

import distributed
import numpy as np
from distributed import as_completed

from ...stragglers import Action
from ..base import SlotKey
from . import _worker

_NO_ACTION = Action()


async def _quietly(call: Any) -> None:
    with contextlib.suppress(Exception):
        await call


class _Tasks:
    """``mode="tasks"``: a Dask task per (worker, slot), pinned by name, via the scheduler."""

    name = "tasks"

    def __init__(self, pool: Any):
        self.pool = pool

    def fresh(self, job: Any, w: int) -> bool:
        return True

    async def hold(self, job: Any, w: int, futs: list) -> Any:
        return None

    async def submit(self, job, r, live, op, operand, actions, arrivals) -> Any:
        pool = self.pool
        # a large operand goes once to each worker of the round (one key per
        # worker: scatter(broadcast=True) broke the scheduler-client stream here)
        scattered: dict[int, distributed.Future] = {}
        if isinstance(operand, np.ndarray) and operand.nbytes > pool.inline_bytes and live:
            got = await asyncio.gather(
                *(
                    pool.client.scatter(
                        [operand], workers=[pool._addr[w]], hash=False, direct=pool.direct,
                        asynchronous=True,
                    )
                    for w in live
                )
            )  # fmt: skip
            scattered = {w: fs[0] for w, fs in zip(live, got, strict=True)}
        futures: dict[Any, SlotKey] = {}
        # all submissions happen in this one step of the loop, so the client
        # sends them to the scheduler as one batch
        for w in live:
            act = actions[w] if actions is not None else _NO_ACTION
            slots = job.futures[w] or []
            for j, payload in enumerate(slots):
                f = pool.client.submit(
                    _worker.slot_task, pool._token, r, w, j, len(slots), op, payload,
                    scattered.get(w, operand), float(act.delay), bool(act.crash),
                    pool.threads_per_worker,
                    key=f"sparsecoded-{pool._token}-{r}-{w}-{j}",
                    workers=[pool.names[w]], allow_other_workers=False, priority=-j, pure=False,
                )  # fmt: skip
                futures[f] = (w, j)
        feeders = []
        if futures:
            ac = as_completed(
                list(futures), loop=pool.client.loop, with_results=True, raise_errors=False
            )
            feeders.append(asyncio.ensure_future(_drain(ac, futures, arrivals)))
        return [futures, scattered, feeders]

    def finish(self, job, r, busy, done, handle) -> None:
        futures, scattered, feeders = handle
        for feeder in feeders:
            feeder.cancel()
        unfinished = [f for f, key in futures.items() if key not in done]
        if unfinished:
            self.pool._spawn(self.pool._cancel(unfinished, r, busy))
        # The round's frame can outlive it (in the traceback of an exception
        # raised from it, freed only by the cycle collector): hold no future,
        # so that Dask releases the tasks' results now.
        handle.clear()
        futures.clear()
        scattered.clear()


class _Actors:
    """``mode="actors"``: one actor per (job, worker) holds the payloads; direct calls."""

    name = "actors"

    def __init__(self, pool: Any):
        self.pool = pool

    def fresh(self, job: Any, w: int) -> bool:
        return job.actors[w] is not None and job.actors[w][0].status == "finished"

    async def hold(self, job: Any, w: int, futs: list) -> Any:
        pool = self.pool
        holder = pool.client.submit(
            _worker.Device, pool.threads_per_worker, *futs,
            actor=True, workers=[pool.names[w]], allow_other_workers=False, pure=False,
            key=f"sparsecoded-device-{pool._token}-{w}-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        try:
            return holder, await holder
        except BaseException:
            with contextlib.suppress(Exception):
                holder.release()
            raise

    async def submit(self, job, r, live, op, operand, actions, arrivals) -> Any:
        # an actor call carries its operand straight to the worker
        for w in live:
            act = actions[w] if actions is not None else _NO_ACTION
            for j in range(len(job.futures[w] or [])):
                try:
                    call = job.actors[w][1].compute(
                        r, j, op, operand, float(act.delay), bool(act.crash)
                    )
                except RuntimeError:  # "Worker holding Actor was lost"
                    arrivals.put_nowait(((w, j), "error", OSError("actor lost")))
                    continue
                # not cancelled with the round: the job's drop waits for it
                job.track(asyncio.ensure_future(_arrival(arrivals, (w, j), call)))
        return None

    def finish(self, job, r, busy, done, handle) -> None:
        for w in busy:
            if job.actors[w] is not None:
                with contextlib.suppress(RuntimeError):  # its worker is gone
                    # a direct call, served at once; tracked so that no drop outruns it
                    job.track(asyncio.ensure_future(_quietly(job.actors[w][1].cancel(r))))


async def _drain(ac: as_completed, futures: Mapping[Any, SlotKey], arrivals: asyncio.Queue) -> None:
    async for fut, value in ac:
        arrivals.put_nowait((futures[fut], fut.status, value))


async def _arrival(arrivals: asyncio.Queue, key: SlotKey, call: Any) -> None:
    try:
        value, status = await call, "finished"
    except Exception as exc:  # the actor's error or a lost connection: sorted out by the caller
        value, status = exc, "error"
    arrivals.put_nowait((key, status, value))


def _is_lost_worker(value: Any) -> bool:
    exc = value[1] if isinstance(value, tuple) and len(value) == 3 else value
    # OSError covers CommClosedError and "Unable to contact Actor's worker"
    return isinstance(exc, (distributed.scheduler.KilledWorker, asyncio.CancelledError, OSError))
