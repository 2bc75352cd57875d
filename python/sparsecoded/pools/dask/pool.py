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
shared 2-core machine), median (min):

=====================  ==================  ==================
load average           ~5                  ~16
tasks, default         47 ms (37)          354 ms (70)
tasks, tuned           44 ms (37)          133 ms (52)
actors, default        18 ms (15)          21 ms (17)
actors, tuned          20 ms (15)          16 ms (14)
=====================  ==================  ==================

Tuned = no worker profiling, no work stealing, slower admin ticks (``TUNED``
in the benchmark): within the noise here.  Dask's batching intervals are
hard-coded (client 10 ms, scheduler 5 ms, worker 2 ms), not ``dask.config``
settings.  Computing tiny products on the worker's event loop instead of a
thread made no measurable difference either.

Importing this module imports ``distributed``; ``import sparsecoded`` does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import distributed
import numpy as np
from distributed import as_completed

from ...errors import NotEnoughWorkers, PoolClosed
from ...stragglers import Action
from ..base import RoundResult, SlotKey, check_round_args, check_timeout, compute

__all__ = ["DaskPool"]

_NO_ACTION = Action()

# ---------------------------------------------------------------------------
# Worker side.  These functions run inside the Dask worker processes; their
# state is per process (a restarted worker starts empty, which is right).

_cond = threading.Condition()
#: pool token -> highest round of that pool that has been cancelled
_cancelled: dict[str, int] = {}
#: (pool token, round, worker) -> number of that worker's slots finished
_progress: dict[tuple[str, int, int], int] = {}

#: exit status of a worker told to crash (any non-zero status: the nanny restarts it)
CRASH_EXIT_STATUS = 75
#: longest a waiting task sleeps between looks at the cancellation flag
_SLICE = 0.05
#: longest close() waits for the workers to forget the pool (a hung worker must not hold it)
_CLOSE_WAIT = 5.0


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


def _cancel_rounds(token: str, round_index: int) -> None:
    """Cancel rounds ``<= round_index`` of the pool ``token`` on this worker (runs on its loop)."""
    with _cond:
        if _cancelled.get(token, -1) < round_index:
            _cancelled[token] = round_index
        for key in [k for k in _progress if k[0] == token and k[1] <= round_index]:
            del _progress[key]
        _cond.notify_all()


def _forget_pool(token: str) -> None:
    """Drop what this worker remembers of a closed pool."""
    with _cond:
        _cancelled.pop(token, None)
        for key in [k for k in _progress if k[0] == token]:
            del _progress[key]
        _cond.notify_all()


def _slot_task(
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
    value = compute(op, payload, operand)
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


class _Device:
    """Actor holding one job's payloads on one worker (``mode="actors"``).

    Its methods are coroutines, so they run on the worker's event loop: a
    ``cancel`` call is served at once even while a delay or a computation is
    under way, and the computation itself runs in a compute thread.
    """

    def __init__(self, *payloads: Any):
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
            _compute_executor(), compute, op, self.payloads[slot], operand
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


# ---------------------------------------------------------------------------
# Master side.


class _EventHub:
    """One handler of the scheduler's ``all`` topic per client, fanned out to its pools.

    ``Client.subscribe_topic`` keeps one handler per topic, so two pools on
    one client must share it.
    """

    _hubs: weakref.WeakKeyDictionary[distributed.Client, _EventHub] = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, client: distributed.Client):
        self.pools: weakref.WeakSet[DaskPool] = weakref.WeakSet()
        self.client = client
        client.subscribe_topic("all", self._handle)

    def _handle(self, event: Any) -> None:
        _, msg = event
        if not isinstance(msg, dict) or msg.get("action") not in ("add-worker", "remove-worker"):
            return
        for pool in list(self.pools):
            pool._membership_event(msg["action"], msg.get("worker"))

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
                with contextlib.suppress(Exception):
                    client.unsubscribe_topic("all")


class _Job:
    """What one job placed: the payloads (kept for re-placement) and their futures."""

    def __init__(self, payloads: list[list[Any]]):
        self.payloads = payloads
        n = len(payloads)
        #: futures of the scattered payloads, per worker (None: not placed)
        self.futures: list[list[distributed.Future] | None] = [None] * n
        #: address each worker's payloads were scattered to
        self.at: list[str | None] = [None] * n
        #: mode="actors": (future, actor proxy) holding the payloads, per worker
        self.actors: list[tuple[distributed.Future, Any] | None] = [None] * n
        #: why the last placement on a worker failed, per worker (until it succeeds)
        self.failed: dict[int, str] = {}

    def release(self, w: int | None = None) -> None:
        """Tell Dask to free worker ``w``'s data (all workers' by default) now.

        Explicit because an actor proxy and its future refer to each other:
        left to the garbage collector, the data could stay for a long time.
        """
        for i in range(len(self.payloads)) if w is None else [w]:
            futs = list(self.futures[i] or [])
            if self.actors[i] is not None:
                holder, actor = self.actors[i]
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


class DaskPool:
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
        _owned: Sequence[Any] = (),
    ):
        if mode not in ("tasks", "actors"):
            raise ValueError(f"mode must be 'tasks' or 'actors', got {mode!r}")
        self.mode = mode
        if getattr(client, "asynchronous", False):
            raise ValueError("DaskPool needs a synchronous Client, got an asynchronous one")
        self.timeout = check_timeout(timeout)
        self.client = client
        self.poll = float(poll)
        self.direct = bool(direct)
        self.inline_bytes = int(inline_bytes)
        self._owned = list(_owned)
        self._closed = False
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
        self._index = {name: i for i, name in enumerate(names)}
        #: current address of each pool worker, None while it is gone
        self._addr: list[str | None] = [present.get(name) for name in names]
        client.sync(self._start_on_loop)
        _EventHub.join(client, self)

    # -- plumbing -------------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{sum(a is not None for a in self._addr)} alive"
        return f"DaskPool(n_workers={self.n_workers}, {state}, scheduler={self._scheduler!r})"

    @property
    def _scheduler(self) -> str | None:
        with contextlib.suppress(Exception):
            return self.client.scheduler.address
        return None

    def __enter__(self) -> DaskPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosed("this DaskPool is closed")

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
        if self._closed:
            return
        if action == "remove-worker":
            for i, a in enumerate(self._addr):
                if a == address:
                    self._addr[i] = None
        else:
            # maybe one of ours coming back from a restart: re-place its payloads now
            self._spawn(self._refresh(replace=True))
        if self._changed is not None:
            self._changed.set()

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
                    and (
                        self.mode == "tasks"
                        or (job.actors[w] is not None and job.actors[w][0].status == "finished")
                    )
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
        job.release(w)
        job.failed.pop(w, None)
        if addr is None:
            return
        items = job.payloads[w]
        futs: list[distributed.Future] = []
        holder: distributed.Future | None = None
        try:
            if items:
                futs = await self.client.scatter(
                    list(items),
                    workers=[addr],
                    hash=False,
                    direct=self.direct,
                    asynchronous=True,
                )
            if self.mode == "actors":
                holder = self.client.submit(
                    _Device,
                    *futs,
                    actor=True,
                    workers=[self.names[w]],
                    allow_other_workers=False,
                    pure=False,
                    key=f"sparsecoded-device-{self._token}-{w}-{uuid.uuid4().hex[:8]}",
                )
                actor = await holder
        except BaseException as exc:
            # The worker left (OSError, a timeout, or FutureCancelledError when it
            # died holding the data), the payload could not be sent, or the wait
            # was cancelled: either way this worker is unplaced for now.
            for f in [*futs, *([holder] if holder is not None else [])]:
                with contextlib.suppress(Exception):
                    f.release()
            if not isinstance(exc, Exception):
                raise
            job.failed[w] = f"{type(exc).__name__}: {exc}"
            return
        job.futures[w] = list(futs)
        job.at[w] = addr
        if self.mode == "actors":
            job.actors[w] = (holder, actor)

    # -- the interface ----------------------------------------------------------

    def place(self, job: str, payloads: Sequence[Sequence[Any]]) -> None:
        """Scatter ``payloads[w]`` to worker ``w`` under the key ``job`` (replacing any before).

        The pool keeps a reference to the payloads so that it can place them
        again on a worker that restarts.
        """
        self._check_open()
        if len(payloads) != self.n_workers:
            raise ValueError(
                f"payloads has {len(payloads)} entries, expected one per worker "
                f"(n_workers = {self.n_workers})"
            )
        record = _Job([list(p) for p in payloads])
        self.client.sync(self._place_async, job, record)

    async def _place_async(self, name: str, record: _Job) -> None:
        old = self._jobs.pop(name, None)
        if old is not None:
            old.release()
        await self._refresh(replace=False)
        self._jobs[name] = record
        await self._ensure_placed(record)

    def drop(self, job: str) -> None:
        """Release what ``job`` placed (unknown jobs are ignored)."""
        record = self._jobs.pop(job, None)
        if record is not None:
            self.client.sync(_release_on_loop, record)

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
        """One round; see :class:`sparsecoded.pools.base.Pool`."""
        self._check_open()
        check_round_args(job, self._jobs, op, actions, self.n_workers)
        limit = self.timeout if timeout is None else check_timeout(timeout)
        return self.client.sync(self._run_async, job, op, operand, enough, actions, limit)

    async def _run_async(
        self,
        name: str,
        op: str,
        operand: Any,
        enough: Callable[[Mapping[SlotKey, Any]], bool],
        actions: Sequence[Action] | None,
        limit: float,
    ) -> RoundResult:
        assert self._changed is not None
        t0 = time.perf_counter()
        deadline = t0 + limit
        job = self._jobs[name]
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

        # a large operand goes once to each worker of the round (one key per
        # worker: scatter(broadcast=True) broke the scheduler-client stream here)
        scattered: dict[int, distributed.Future] = {}
        if (
            self.mode == "tasks"  # an actor call carries its arguments straight to the worker
            and operand is not None
            and isinstance(operand, np.ndarray)
            and operand.nbytes > self.inline_bytes
            and live
        ):
            got = await asyncio.gather(
                *(
                    self.client.scatter(
                        [operand],
                        workers=[self._addr[w]],
                        hash=False,
                        direct=self.direct,
                        asynchronous=True,
                    )
                    for w in live
                )
            )
            scattered = {w: fs[0] for w, fs in zip(live, got, strict=True)}

        # Both modes feed one queue of arrivals: ((worker, slot), status, value).
        arrivals: asyncio.Queue = asyncio.Queue()
        feeders: list[asyncio.Future] = []
        futures: dict[Any, SlotKey] = {}
        per_worker: dict[int, int] = {}
        # all submissions happen in this one step of the loop, so the client
        # sends them to the scheduler (or the workers) as one batch
        for w in live:
            act = actions[w] if actions is not None else _NO_ACTION
            slots = job.futures[w] or []
            per_worker[w] = len(slots)
            for j, payload in enumerate(slots):
                arg = scattered.get(w, operand)
                if self.mode == "actors":
                    try:
                        call = job.actors[w][1].compute(
                            r, j, op, arg, float(act.delay), bool(act.crash)
                        )
                    except RuntimeError:  # "Worker holding Actor was lost"
                        arrivals.put_nowait(((w, j), "error", OSError("actor lost")))
                        continue
                    feeders.append(asyncio.ensure_future(_arrival(arrivals, (w, j), call)))
                    continue
                f = self.client.submit(
                    _slot_task,
                    self._token,
                    r,
                    w,
                    j,
                    len(slots),
                    op,
                    payload,
                    arg,
                    float(act.delay),
                    bool(act.crash),
                    key=f"sparsecoded-{self._token}-{r}-{w}-{j}",
                    workers=[self.names[w]],
                    allow_other_workers=False,
                    priority=-j,
                    pure=False,
                )
                futures[f] = (w, j)
        ac = None
        if futures:
            ac = as_completed(
                list(futures), loop=self.client.loop, with_results=True, raise_errors=False
            )
            feeders.append(asyncio.ensure_future(_drain(ac, futures, arrivals)))

        results: dict[SlotKey, Any] = {}
        order: list[SlotKey] = []
        seconds: dict[SlotKey, float] = {}
        finished: dict[SlotKey, float] = {}  # worker clock: replies may overtake each other
        remaining = {w: count for w, count in per_worker.items() if count}
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
            for feeder in feeders:
                feeder.cancel()
            unfinished = [f for f, key in futures.items() if key not in results]
            busy = sorted(w for w in remaining if w not in dead)
            if self.mode == "actors":
                for w in busy:
                    if job.actors[w] is not None:
                        with contextlib.suppress(RuntimeError):  # its worker is gone
                            job.actors[w][1].cancel(r)  # a direct call, served at once
            elif unfinished:
                self._spawn(self._cancel(unfinished, r, busy))
            # This frame can outlive the round (in the traceback of an exception
            # raised from it, freed only by the cycle collector): hold no future,
            # so that Dask releases the tasks' results now.
            scattered.clear()
            futures.clear()
            unfinished = ac = None

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
            why = f"timed out after {limit:g} s" if remaining else "every worker answered or died"
            unplaced = {w: job.failed[w] for w in sorted(dead) if w in job.failed}
            raise NotEnoughWorkers(
                f"round {r} of job {name!r} cannot be decoded: {why}; "
                f"{len(self._answered(order))} of {self.n_workers} workers answered "
                f"{self._answered(order)}, dead: {sorted(dead)}, "
                f"still busy: {sorted(set(remaining) - dead)}"
                + (f"; placement failed on {unplaced}" if unplaced else ""),
                dead=dead,
                answered=self._answered(order),
                # nothing more can arrive once no worker remains: hand over what did
                partial=None if remaining else rr,
            )
        return rr

    @staticmethod
    def _answered(order: list[SlotKey]) -> list[int]:
        return list(dict.fromkeys(w for w, _ in order))

    async def _cancel(self, futures: list[distributed.Future], r: int, busy: list[int]) -> None:
        """Cancel the round's leftover tasks and wake the injected delays of ``busy`` workers."""
        with contextlib.suppress(Exception):
            await self.client.cancel(futures, asynchronous=True)
        # addresses looked up now: a worker seen dying meanwhile is not called
        addrs = [a for a in (self._addr[w] for w in busy) if a is not None]
        await self._call_workers(addrs, 10.0, _cancel_rounds, self._token, r)

    def close(self) -> None:
        """Release what the pool placed; close the cluster only if the pool created it."""
        if self._closed:
            return
        self._closed = True
        _EventHub.leave(self.client, self)
        with contextlib.suppress(Exception):
            self.client.sync(self._close_async)
        for record in self._jobs.values():
            with contextlib.suppress(Exception):
                self.client.sync(_release_on_loop, record)
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
        addrs = [a for a in self._addr if a is not None]
        await self._call_workers(addrs, _CLOSE_WAIT, _forget_pool, self._token)

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


async def _release_on_loop(record: _Job) -> None:
    record.release()


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


# ---------------------------------------------------------------------------
# Over SSH.
