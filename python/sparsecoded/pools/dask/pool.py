"""The pool interface over a dask.distributed cluster.

:class:`DaskPool` runs the rounds of a coded job on any ``distributed.Client``
(a ``LocalCluster``, a cluster started over SSH by :func:`ssh_pool`, or one
that someone already runs).  Pool worker ``i`` is the Dask worker with a fixed
*name*; a worker killed and restarted by its nanny keeps that name but gets a
new address and loses its data, so the pool looks workers up by name before
every round and scatters their payloads again when they come back.

A round, in either mode:

- worker ``i``'s slots run one after another on that worker only (pinned by
  name, never moved), and each result leaves as soon as it is done;
- the master takes results in arrival order until ``enough`` says the job can
  decode, then cancels the rest; a cancelled injected delay wakes at once;
- worker deaths are seen through the scheduler's ``remove-worker`` events, a
  failed call, or a slow poll of the scheduler; the round raises
  :class:`~sparsecoded.errors.NotEnoughWorkers` as soon as every worker has
  answered or died, or at the timeout.

``mode="tasks"``: each (worker, slot) is a Dask task on the scattered payload,
restricted to the worker (``allow_other_workers=False``), taken with
``distributed.as_completed`` and cancelled with ``Client.cancel`` plus a
worker-local flag.  Every round goes client -> scheduler -> worker ->
scheduler -> client and a gather, each hop through Dask's batched streams.

``mode="actors"`` (default): the scattered payloads are handed to one Dask
actor per worker (created pinned by name); a round is one direct call per
slot from the master to the actors, with no scheduler in the path.  The
actor's methods are coroutines, so a cancel call is served at once.

Measured per round (all 8 answers needed, tiny blocks, n = 8, LocalCluster
with processes and 1 thread per worker, ``bench/test_bench_dask.py``, this
shared 2-core machine, load ~5 and ~16), median: tasks 47 and 354 ms, actors
18 and 21 ms.  Tuning Dask (no profiling, no work stealing, slower admin
ticks) or computing tiny products on the worker's event loop stayed within
the noise; Dask's batching intervals (client 10 ms, scheduler 5 ms, worker
2 ms) are hard-coded, not ``dask.config`` settings.

The modes are two strategy objects behind one round loop (:mod:`._modes`);
what runs on the workers is in :mod:`._worker`.  Deaths and re-placements are
logged at INFO on the ``sparsecoded.pools.dask`` logger.

Importing this module imports ``distributed``; ``import sparsecoded`` does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import distributed
import numpy as np

from ...stragglers import Action
from ..base import (
    PlacedJob,
    PoolBase,
    RoundResult,
    SlotKey,
    check_threads,
    check_timeout,
    place_payloads,
)
from . import _worker
from ._modes import _Actors, _is_lost_worker, _Tasks
from ._worker import CRASH_EXIT_STATUS

__all__ = ["CRASH_EXIT_STATUS", "DaskPool"]

log = logging.getLogger("sparsecoded.pools.dask")

#: longest close() waits for the workers to forget the pool (a hung worker must not hold it)
_CLOSE_WAIT = 5.0
#: longest a drop waits for a job's calls still in flight before it frees the actors
_SETTLE_WAIT = 5.0


class _EventHub:
    """One handler of the scheduler's ``all`` topic per client, fanned out to its pools.

    ``Client.subscribe_topic`` keeps one handler per topic, so two pools on one
    client share it.  At the client's close it unsubscribes first (else the
    scheduler sends the client's own ``remove-client`` event down its closing
    stream and logs CRITICAL) and marks its pools closed.
    """

    _hubs: weakref.WeakKeyDictionary[distributed.Client, _EventHub] = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, client: distributed.Client):
        self.pools: weakref.WeakSet[DaskPool] = weakref.WeakSet()
        self.client = client
        client.subscribe_topic("all", self._handle)
        # Client._close stops every periodic callback first thing, on every path
        # (close(), the context manager, atexit): the one hook a Client offers.
        getattr(client, "_periodic_callbacks", {})[f"sparsecoded-{id(self)}"] = self

    def _handle(self, event: Any) -> None:
        _, msg = event
        if not isinstance(msg, dict) or msg.get("action") not in ("add-worker", "remove-worker"):
            return
        for pool in list(self.pools):
            pool._membership_event(msg["action"], msg.get("worker"))

    start = staticmethod(lambda: None)  # the periodic-callback interface: stop() matters

    def stop(self) -> None:
        """The client is closing (on its loop): let go of it, close its pools' books."""
        with self._lock:
            self._hubs.pop(self.client, None)
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic("all")
        for pool in list(self.pools):
            pool._client_closed()

    @classmethod
    def join(cls, client: distributed.Client, pool: DaskPool) -> None:
        with cls._lock:
            hub = cls._hubs.get(client)
            if hub is None:
                hub = cls._hubs[client] = cls(client)
            hub.pools.add(pool)

    @classmethod
    def leave(cls, client: distributed.Client, pool: DaskPool) -> None:
        with cls._lock:
            hub = cls._hubs.get(client)
            if hub is None:
                return
            hub.pools.discard(pool)
            if not hub.pools:
                del cls._hubs[client]
                getattr(client, "_periodic_callbacks", {}).pop(f"sparsecoded-{id(hub)}", None)
                with contextlib.suppress(Exception):
                    client.unsubscribe_topic("all")


class _Job(PlacedJob):
    """What one job placed: the checked payloads (kept for re-placement) and their futures."""

    def __init__(self, placed: PlacedJob):
        super().__init__(
            placed.payloads, placed.n_cols, placed.dtype, placed.first_matrix, placed.first_pair
        )
        n = len(self.payloads)
        #: futures of the scattered payloads, per worker (None: not placed)
        self.futures: list[list[distributed.Future] | None] = [None] * n
        #: address each worker's payloads were scattered to
        self.at: list[str | None] = [None] * n
        #: mode="actors": (future, actor proxy) holding the payloads, per worker
        self.actors: list[tuple[distributed.Future, Any] | None] = [None] * n
        #: why the last placement on a worker failed, per worker (until it succeeds)
        self.failed: dict[int, str] = {}
        #: actor calls still in flight (freeing the actors waits for them)
        self.calls: set[asyncio.Future] = set()

    def track(self, call: asyncio.Future) -> None:
        self.calls.add(call)
        call.add_done_callback(self.calls.discard)

    async def settle(self) -> None:
        """Wait (a bounded time) for the calls in flight, then free the job's data.

        A call that reached a worker after its actor was freed would make the
        worker and the scheduler log a ``KeyError`` traceback.
        """
        if self.calls:
            await asyncio.wait(list(self.calls), timeout=_SETTLE_WAIT)
        self.release()

    def release(self, w: int | None = None) -> None:
        """Tell Dask to free worker ``w``'s data (all workers' by default) now.

        Explicit because an actor proxy and its future refer to each other:
        left to the garbage collector, the data could stay for a long time.
        """
        for i in range(len(self.payloads)) if w is None else [w]:
            futs = list(self.futures[i] or [])
            if (held := self.actors[i]) is not None:
                holder, actor = held
                futs.append(holder)
                inner = getattr(actor, "_future", None)
                if isinstance(inner, distributed.Future):
                    futs.append(inner)
            for f in futs:
                with contextlib.suppress(Exception):
                    f.release()
            self.futures[i] = None
            self.actors[i] = None
            self.at[i] = None


def _name_order(name: Any) -> tuple[int, Any]:
    return (0, name) if isinstance(name, int) else (1, str(name))


class DaskPool(PoolBase):
    """Worker pool over a ``dask.distributed`` cluster.

    Parameters
    ----------
    client : distributed.Client
        A synchronous client of the cluster.  The pool never closes it unless
        the pool created it (see :func:`ssh_pool`).
    workers : sequence, optional
        Dask worker *names*; pool worker ``i`` is ``workers[i]``.  Default:
        every worker of the cluster now, sorted by name.  Names must be stable
        across restarts (``LocalCluster`` and :func:`ssh_pool` name workers
        ``0 .. n-1``); an address used as a name would change on restart.
    timeout : float
        Default limit of one round in seconds (``inf``: no limit).
    poll : float
        How often a waiting round asks the scheduler which workers are alive,
        in case a membership event is missed.
    direct : bool
        Gather results straight from the workers (one hop fewer than through
        the scheduler); set False when the master cannot reach the workers.
    inline_bytes : int
        ``mode="tasks"``: operands up to this size travel inside the tasks;
        larger ones are scattered once per round to the workers of that round.
        (An actor call always carries its operand straight to the worker.)
    mode : {"tasks", "actors"}
        ``"tasks"``: every (worker, slot) of a round is a Dask task pinned to
        the worker by name, taken with ``as_completed`` and cancelled through
        the scheduler.  ``"actors"``: the payloads live in one Dask actor per
        worker and a round is direct calls from the master to those actors,
        with no scheduler in the path (several times faster per round; see
        the module notes).  Placement, pinning by name, cancellation, crash
        detection and re-placement behave the same.
    threads_per_worker : int
        OpenMP threads of each kernel call on a worker (>= 1); the Dask
        worker's own thread count is the cluster's business.

    Notes
    -----
    ``mode="tasks"`` wants one thread per worker: a device then computes its
    slots one after another and cancelled work does not overlap the next
    round (the actors compute in one thread of their own anyway).
    ``mode="actors"`` needs the master to reach the workers directly, as
    ``direct=True`` does.

    Examples
    --------
    >>> from distributed import Client, LocalCluster  # doctest: +SKIP
    >>> with LocalCluster(n_workers=4, threads_per_worker=1) as cluster, Client(cluster) as c:
    ...     with DaskPool(c) as pool:
    ...         pool.place("A", [[block] for block in coded_blocks])
    ...         rr = pool.run("A", "matvec", x, enough=lambda r: len(r) >= 3)
    """

    def __init__(
        self,
        client: distributed.Client,
        *,
        workers: Sequence[Any] | None = None,
        timeout: float = 60.0,
        poll: float = 0.5,
        direct: bool = True,
        inline_bytes: int = 1 << 20,
        mode: str = "actors",
        threads_per_worker: int = 1,
        _owned: Sequence[Any] = (),
    ):
        modes: dict[str, type[_Tasks] | type[_Actors]] = {"tasks": _Tasks, "actors": _Actors}
        if mode not in modes:
            raise ValueError(f"mode must be 'tasks' or 'actors', got {mode!r}")
        if getattr(client, "asynchronous", False):
            raise ValueError("DaskPool needs a synchronous Client, got an asynchronous one")
        self._mode: _Tasks | _Actors = modes[mode](self)
        self.timeout = check_timeout(timeout)
        self.threads_per_worker = check_threads(threads_per_worker)
        self.client = client
        self.poll = float(poll)
        self.direct = bool(direct)
        self.inline_bytes = int(inline_bytes)
        self._owned = list(_owned)
        self._released = False
        self._token = uuid.uuid4().hex[:12]
        self._rounds = itertools.count()
        self._jobs: dict[str, _Job] = {}
        self._background: set[asyncio.Future] = set()
        self._changed: asyncio.Event | None = None
        self._replace_lock: asyncio.Lock | None = None

        present = client.sync(self._identity)
        if workers is None:
            names = sorted(present, key=_name_order)
            if not names:
                raise ValueError("the cluster has no workers (expected at least 1, found 0)")
        else:
            names = list(workers)
            if len(set(map(repr, names))) != len(names):
                raise ValueError(f"worker names must be distinct, got {names}")
            missing = [w for w in names if w not in present]
            if missing:
                raise ValueError(
                    f"workers {missing} are not in the cluster; present: "
                    f"{sorted(present, key=_name_order)}"
                )
        self.names: list[Any] = names
        self.n_workers = len(names)
        #: current address of each pool worker, None while it is gone
        self._addr: list[str | None] = [present.get(name) for name in names]
        client.sync(self._start_on_loop)
        _EventHub.join(client, self)

    # -- plumbing -------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"tasks"`` or ``"actors"`` (see the class notes)."""
        return self._mode.name

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{sum(a is not None for a in self._addr)} alive"
        return f"DaskPool(n_workers={self.n_workers}, {state}, scheduler={self._scheduler!r})"

    @property
    def _scheduler(self) -> str | None:
        with contextlib.suppress(Exception):
            return self.client.scheduler.address
        return None

    def alive(self) -> list[int]:
        """Pool workers the scheduler knows now (asks it; a restarted worker counts again)."""
        self._check_open()
        self.client.sync(self._refresh, replace=False)
        return [w for w, a in enumerate(self._addr) if a is not None]

    def wait_for_workers(self, timeout: float = 60.0) -> None:
        """Block until every pool worker is back and holds its payloads (after a crash)."""
        self._check_open()
        deadline = time.monotonic() + check_timeout(timeout)
        while True:
            left = deadline - time.monotonic()
            self.client.sync(self._refresh, replace=True, timeout=max(left, 0.1))
            missing = [
                w
                for w in range(self.n_workers)
                if self._addr[w] is None
                or any(job.at[w] != self._addr[w] for job in self._jobs.values())
            ]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers {missing} did not come back within {timeout:g} s")
            time.sleep(0.1)

    async def _start_on_loop(self) -> None:
        self._changed = asyncio.Event()
        self._replace_lock = asyncio.Lock()

    async def _identity(self) -> dict[Any, str]:
        """name -> address of every worker the scheduler knows now."""
        info = await self.client.scheduler.identity()
        return {w["name"]: addr for addr, w in info["workers"].items()}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        # nobody awaits a background task: take its outcome (the scheduler may be
        # gone at close) so that asyncio does not log "exception never retrieved"
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _membership_event(self, action: str, address: str | None) -> None:
        """Called on the client's loop for every worker added or removed."""
        if self.closed:
            return
        if action == "remove-worker":
            for i, a in enumerate(self._addr):
                if a == address:
                    self._addr[i] = None
                    log.info("DaskPool worker %d (%s) left the cluster", i, address)
        else:
            # maybe one of ours coming back from a restart: re-place its payloads now
            self._spawn(self._refresh(replace=True))
        if self._changed is not None:
            self._changed.set()

    def _client_closed(self) -> None:
        """The client is closing under the pool (on its loop): nothing can be called any more."""
        if self._closed_reason is None:
            self._closed_reason = "its Client was closed"
        for task in list(self._background):
            task.cancel()
        self._jobs.clear()

    async def _refresh(self, *, replace: bool, timeout: float | None = None) -> None:
        """Look the pool's workers up by name; re-place payloads of those that moved."""
        present = await self._identity()
        self._addr = [present.get(name) for name in self.names]
        if replace and self._jobs:
            await asyncio.gather(
                *(self._ensure_placed(job, timeout=timeout) for job in list(self._jobs.values()))
            )

    async def _ensure_placed(
        self, job: _Job, only: Iterable[int] | None = None, *, timeout: float | None = None
    ) -> None:
        """Place ``job`` on every live worker that lacks it, for at most ``timeout`` seconds.

        A worker whose placement fails or is not done in time stays unplaced
        (the next round or refresh tries again).  ``client.scatter`` to a
        worker that just left retries for the client's timeout (30 s by
        default) before it gives up: a round must not wait for that.
        """
        assert self._replace_lock is not None
        lock = self._replace_lock
        end = (
            None
            if timeout is None or timeout == float("inf")
            else asyncio.get_running_loop().time() + max(timeout, 0.0)
        )

        def left() -> float | None:
            return None if end is None else max(end - asyncio.get_running_loop().time(), 0.0)

        try:
            await asyncio.wait_for(lock.acquire(), left())
        except asyncio.TimeoutError:
            return  # a background re-placement holds the lock: the stale workers sit out
        tasks: list[asyncio.Future] = []
        try:
            todo = []
            for w in range(self.n_workers) if only is None else only:
                addr = self._addr[w]
                futs = job.futures[w]
                fresh = (
                    futs is not None
                    and job.at[w] == addr
                    and all(f.status == "finished" for f in futs)
                    and self._mode.fresh(job, w)
                )
                if addr is not None and not fresh:
                    todo.append(w)
            tasks = [asyncio.ensure_future(self._scatter(job, w)) for w in todo]
            if tasks:
                done, _ = await asyncio.wait(tasks, timeout=left())
                for task in done:
                    task.result()  # _scatter keeps Exceptions to itself; anything else goes up
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()  # this worker stays unplaced
            lock.release()

    async def _scatter(self, job: _Job, w: int) -> None:
        """Place worker ``w``'s payloads; on any failure leave it unplaced and say why."""
        addr = self._addr[w]
        again = job.at[w] is not None or w in job.failed
        job.release(w)
        job.failed.pop(w, None)
        if addr is None:
            return
        items = job.payloads[w]
        futs: list[distributed.Future] = []
        try:
            if items:
                futs = await self.client.scatter(
                    list(items), workers=[addr], hash=False, direct=self.direct, asynchronous=True
                )
            held = await self._mode.hold(job, w, futs)
        except BaseException as exc:
            # The worker left (OSError, a timeout, or FutureCancelledError when it
            # died holding the data), the payload could not be sent, or the wait
            # was cancelled: either way this worker is unplaced for now.
            for f in futs:
                with contextlib.suppress(Exception):
                    f.release()
            if not isinstance(exc, Exception):
                raise
            job.failed[w] = f"{type(exc).__name__}: {exc}"
            log.info("DaskPool could not place a job on worker %d: %s", w, job.failed[w])
            return
        job.futures[w] = list(futs)
        job.at[w] = addr
        job.actors[w] = held
        if again:
            log.info("DaskPool re-placed a job's payloads on worker %d (%s)", w, addr)

    # -- the interface ----------------------------------------------------------

    def place(self, job: str, payloads: Sequence[Sequence[Any]]) -> None:
        """Scatter ``payloads[w]`` to worker ``w`` under the key ``job`` (replacing any before).

        The payloads are checked once, here (see :func:`.base.place_payloads`);
        the pool keeps a reference to them so that it can place them again on
        a worker that restarts.
        """
        self._check_open()
        record = _Job(place_payloads(payloads, self.n_workers))
        self.client.sync(self._place_async, job, record)

    async def _place_async(self, name: str, record: _Job) -> None:
        old = self._jobs.pop(name, None)
        if old is not None:
            await old.settle()
        await self._refresh(replace=False)
        self._jobs[name] = record
        await self._ensure_placed(record)

    def drop(self, job: str) -> None:
        """Release what ``job`` placed (unknown jobs are ignored)."""
        record = self._jobs.pop(job, None)
        if record is not None and not self.closed:
            self.client.sync(record.settle)

    def run(
        self,
        job: str,
        op: str,
        operand: np.ndarray | None,
        *,
        enough: Callable[[Mapping[SlotKey, Any]], bool],
        actions: Sequence[Action] | None = None,
        timeout: float | None = None,
    ) -> RoundResult:
        """One round; see :class:`sparsecoded.pools.base.Pool`.

        Raises :class:`~sparsecoded.errors.NotEnoughWorkers` once every worker
        has answered or died, :class:`~sparsecoded.errors.RoundTimeout` at the
        timeout.  ``RoundResult.extra`` holds ``round`` (the pool's count),
        ``mode`` and ``finished_at`` (each result's worker clock).
        """
        record, x, limit = self._start_round(job, op, operand, actions, timeout)
        return self.client.sync(self._run_async, job, record, op, x, enough, actions, limit)

    async def _run_async(
        self,
        name: str,
        job: _Job,
        op: str,
        operand: Any,
        enough: Callable[[Mapping[SlotKey, Any]], bool],
        actions: Sequence[Action] | None,
        limit: float,
    ) -> RoundResult:
        assert self._changed is not None
        t0 = time.perf_counter()
        deadline = t0 + limit
        r = next(self._rounds)
        # Placing the payloads again on a restarted worker takes milliseconds;
        # one on a worker that just left can hang for the client's timeout.  It
        # may take half of the round's time: the placed workers keep the rest.
        await self._ensure_placed(job, timeout=None if limit == float("inf") else limit / 2)
        live = [
            w
            for w in range(self.n_workers)
            if self._addr[w] is not None
            and job.futures[w] is not None
            and job.at[w] == self._addr[w]
        ]
        dead = set(range(self.n_workers)) - set(live)

        # Both modes feed one queue of arrivals: ((worker, slot), status, value).
        arrivals: asyncio.Queue = asyncio.Queue()
        handle = await self._mode.submit(job, r, live, op, operand, actions, arrivals)
        results: dict[SlotKey, Any] = {}
        order: list[SlotKey] = []
        seconds: dict[SlotKey, float] = {}
        finished: dict[SlotKey, float] = {}  # worker clock: replies may overtake each other
        remaining = {w: len(futs) for w in live if (futs := job.futures[w])}
        error: BaseException | None = None
        decided = False
        nxt: asyncio.Future | None = None
        changed: asyncio.Future | None = None
        try:
            decided = bool(enough(results)) if not remaining else False
            while not decided and remaining:
                now = time.perf_counter()
                if now >= deadline:
                    break
                if nxt is None:
                    nxt = asyncio.ensure_future(arrivals.get())
                if changed is None:
                    self._changed.clear()
                    changed = asyncio.ensure_future(self._changed.wait())
                done, _ = await asyncio.wait(
                    {nxt, changed},
                    timeout=min(self.poll, deadline - now),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if nxt in done:
                    (w, j), status, value = nxt.result()
                    nxt = None
                    if w not in remaining:
                        continue
                    if status == "finished" and value is not None:
                        y, secs, finished[(w, j)] = value
                        results[(w, j)] = y
                        order.append((w, j))
                        seconds[(w, j)] = secs
                        remaining[w] -= 1
                        if remaining[w] == 0:
                            del remaining[w]
                        decided = bool(enough(results))
                    elif status == "error" and not _is_lost_worker(value):
                        error = value[1] if isinstance(value, tuple) else value
                        break
                    else:  # cancelled or killed: the worker is gone
                        dead.add(w)
                        remaining.pop(w, None)
                else:
                    if changed in done:
                        changed = None
                    else:  # quiet for `poll` seconds: ask the scheduler
                        await self._refresh(replace=False)
                    for w in list(remaining):
                        if self._addr[w] != job.at[w]:
                            dead.add(w)
                            del remaining[w]
        finally:
            for waiter in (nxt, changed):
                if waiter is not None:
                    waiter.cancel()
            busy = sorted(w for w in remaining if w not in dead)
            self._mode.finish(job, r, busy, results, handle)
            handle = None

        elapsed = time.perf_counter() - t0
        if error is not None:
            raise error
        rr = RoundResult(
            results=results,
            order=order,
            compute_seconds=seconds,
            cancelled=sorted(set(remaining) - dead),
            dead=sorted(dead),
            seconds=elapsed,
            extra={"backend": "dask", "mode": self.mode, "round": r, "finished_at": finished},
        )
        if not decided:
            timed_out = bool(remaining)
            why = f"timed out after {limit:g} s" if timed_out else "every worker answered or died"
            unplaced = {w: job.failed[w] for w in sorted(dead) if w in job.failed}
            more = f"; still busy: {sorted(set(remaining) - dead)}"
            more += f"; placement failed on {unplaced}" if unplaced else ""
            raise self._round_failed(
                name, why, order=order, n_results=len(results), dead=dead, timed_out=timed_out,
                # nothing more can arrive once no worker remains: hand over what did
                partial=None if timed_out else rr, more=more,
            )  # fmt: skip
        return rr

    async def _cancel(self, futures: list[distributed.Future], r: int, busy: list[int]) -> None:
        """Cancel the round's leftover tasks and wake the injected delays of ``busy`` workers."""
        with contextlib.suppress(Exception):
            await self.client.cancel(futures, asynchronous=True)
        # addresses looked up now: a worker seen dying meanwhile is not called
        addrs = [a for a in (self._addr[w] for w in busy) if a is not None]
        await self._call_workers(addrs, 10.0, _worker.cancel_rounds, self._token, r)

    def close(self) -> None:
        """Release what the pool placed; close the cluster only if the pool created it."""
        if self._released:
            return
        self._released = True
        if self._closed_reason is None:
            self._closed_reason = "close() was called"
        _EventHub.leave(self.client, self)
        if self.client.status == "running":  # not when the client closed under the pool
            with contextlib.suppress(Exception):
                self.client.sync(self._close_async)
        self._jobs.clear()
        for thing in reversed(self._owned):
            with contextlib.suppress(Exception):
                thing.close()
        self._owned.clear()

    async def _close_async(self) -> None:
        if self._background:
            _, late = await asyncio.wait(list(self._background), timeout=2)
            for task in late:
                task.cancel()
        for record in list(self._jobs.values()):
            with contextlib.suppress(Exception):
                await record.settle()
        addrs = [a for a in self._addr if a is not None]
        await self._call_workers(addrs, _CLOSE_WAIT, _worker.forget_pool, self._token)

    async def _call_workers(self, addrs: list[str], timeout: float, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the workers at ``addrs``, best effort: a gone or hung
        worker neither raises nor holds the caller longer than ``timeout`` seconds."""
        if not addrs:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.client.run(fn, *args, workers=addrs, on_error="ignore", asynchronous=True),
                timeout=timeout,
            )
