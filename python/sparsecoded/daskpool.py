"""The pool interface over a dask.distributed cluster.

:class:`DaskPool` runs the rounds of a coded job on any ``distributed.Client``
(a ``LocalCluster``, a cluster started over SSH by :func:`ssh_pool`, or one
that someone already runs).  Pool worker ``i`` is the Dask worker with a fixed
*name*; a worker killed and restarted by its nanny keeps that name but gets a
new address and loses its data, so the pool looks workers up by name before
every round and scatters their payloads again when they come back.

How a round works:

- each (worker, slot) is one task, restricted to that worker by name, with no
  fallback to other workers; a worker's slots run one after another
  (a worker-local chain), so each result leaves as soon as it is done;
- results are taken with ``distributed.as_completed`` until ``enough`` says the
  job can decode; the remaining tasks are cancelled through Dask and a
  worker-local flag wakes any injected delay at once;
- worker deaths are seen through the scheduler's ``remove-worker`` events (and
  a slow poll of the scheduler as a fallback); the round raises
  :class:`~sparsecoded.errors.NotEnoughWorkers` as soon as every worker has
  answered or died, or at the timeout.

Importing this module imports ``distributed``; ``import sparsecoded`` does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import distributed
import numpy as np
from distributed import as_completed

from .errors import NotEnoughWorkers, PoolClosed
from .pool import OPS, RoundResult, SlotKey, compute
from .stragglers import Action

__all__ = ["DaskPool", "ssh_pool"]

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
) -> tuple[Any, float] | None:
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
    return value, seconds


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
        Default limit of one round in seconds.
    poll : float
        How often a waiting round asks the scheduler which workers are alive,
        in case a membership event is missed.
    direct : bool
        Gather results straight from the workers (one hop fewer than through
        the scheduler); set False when the master cannot reach the workers.
    inline_bytes : int
        Operands up to this size travel inside the tasks; larger ones are
        scattered once per round to the workers of that round.

    Notes
    -----
    Workers should have one thread each: a device then computes its slots
    one after another and cancelled work does not overlap the next round.

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
        _owned: Sequence[Any] = (),
    ):
        if getattr(client, "asynchronous", False):
            raise ValueError("DaskPool needs a synchronous Client, got an asynchronous one")
        if float(timeout) <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.client = client
        self.timeout = float(timeout)
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
        deadline = time.monotonic() + float(timeout)
        while True:
            self.client.sync(self._refresh, replace=True)
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

    async def _refresh(self, *, replace: bool) -> None:
        """Look the pool's workers up by name; re-place payloads of those that moved."""
        present = await self._identity()
        self._addr = [present.get(name) for name in self.names]
        if replace and self._jobs:
            await asyncio.gather(*(self._ensure_placed(job) for job in list(self._jobs.values())))

    async def _ensure_placed(self, job: _Job, only: Iterable[int] | None = None) -> None:
        assert self._replace_lock is not None
        async with self._replace_lock:
            todo = []
            for w in range(self.n_workers) if only is None else only:
                addr = self._addr[w]
                futs = job.futures[w]
                fresh = (
                    futs is not None
                    and job.at[w] == addr
                    and all(f.status == "finished" for f in futs)
                )
                if addr is not None and not fresh:
                    todo.append(w)
            if todo:
                await asyncio.gather(*(self._scatter(job, w) for w in todo))

    async def _scatter(self, job: _Job, w: int) -> None:
        addr = self._addr[w]
        job.futures[w] = None
        job.at[w] = None
        if addr is None:
            return
        items = job.payloads[w]
        try:
            futs = (
                await self.client.scatter(
                    list(items),
                    workers=[addr],
                    hash=False,
                    direct=self.direct,
                    asynchronous=True,
                )
                if items
                else []
            )
        except (OSError, distributed.comm.CommClosedError, asyncio.TimeoutError):
            return  # gone again; the next refresh will retry
        job.futures[w] = list(futs)
        job.at[w] = addr

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
        self._jobs.pop(name, None)
        await self._refresh(replace=False)
        self._jobs[name] = record
        await self._ensure_placed(record)

    def drop(self, job: str) -> None:
        """Release what ``job`` placed (unknown jobs are ignored)."""
        self._jobs.pop(job, None)  # the futures go with it: Dask frees the data

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
        """One round; see :class:`sparsecoded.pool.Pool`."""
        self._check_open()
        if job not in self._jobs:
            raise KeyError(f"job {job!r} was never placed on this pool")
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}, expected one of {OPS}")
        if actions is not None and len(actions) != self.n_workers:
            raise ValueError(
                f"actions has {len(actions)} entries, expected n_workers = {self.n_workers}"
            )
        limit = self.timeout if timeout is None else float(timeout)
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
        await self._ensure_placed(job)
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
            operand is not None
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

        # all submissions happen in this one step of the loop, so the client
        # sends them to the scheduler as one batch
        futures: dict[Any, SlotKey] = {}
        per_worker: dict[int, list[distributed.Future]] = {}
        for w in live:
            act = actions[w] if actions is not None else _NO_ACTION
            slots = job.futures[w] or []
            for j, payload in enumerate(slots):
                f = self.client.submit(
                    _slot_task,
                    self._token,
                    r,
                    w,
                    j,
                    len(slots),
                    op,
                    payload,
                    scattered.get(w, operand),
                    float(act.delay),
                    bool(act.crash),
                    key=f"sparsecoded-{self._token}-{r}-{w}-{j}",
                    workers=[self.names[w]],
                    allow_other_workers=False,
                    priority=-j,
                    pure=False,
                )
                futures[f] = (w, j)
                per_worker.setdefault(w, []).append(f)

        results: dict[SlotKey, Any] = {}
        order: list[SlotKey] = []
        seconds: dict[SlotKey, float] = {}
        remaining = {w: len(fs) for w, fs in per_worker.items()}
        for w, count in list(remaining.items()):
            if count == 0:
                del remaining[w]
        error: BaseException | None = None
        decided = False

        ac = as_completed(
            list(futures), loop=self.client.loop, with_results=True, raise_errors=False
        )
        nxt: asyncio.Future | None = None
        changed: asyncio.Future | None = None
        try:
            decided = bool(enough(results)) if not futures else False
            while not decided and remaining:
                now = time.perf_counter()
                if now >= deadline:
                    break
                if nxt is None:
                    nxt = asyncio.ensure_future(ac.__anext__())
                if changed is None:
                    self._changed.clear()
                    changed = asyncio.ensure_future(self._changed.wait())
                done, _ = await asyncio.wait(
                    {nxt, changed},
                    timeout=min(self.poll, deadline - now),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if nxt in done:
                    try:
                        fut, value = nxt.result()
                    except StopAsyncIteration:
                        break
                    finally:
                        nxt = None
                    w, j = futures[fut]
                    if w not in remaining:
                        continue
                    if fut.status == "finished" and value is not None:
                        y, secs = value
                        results[(w, j)] = y
                        order.append((w, j))
                        seconds[(w, j)] = secs
                        remaining[w] -= 1
                        if remaining[w] == 0:
                            del remaining[w]
                        decided = bool(enough(results))
                    elif fut.status == "error" and not _is_lost_worker(value):
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
            ac.clear()
            unfinished = [f for f, (w, _) in futures.items() if (w, _) not in results]
            busy = sorted(w for w in remaining if w not in dead)
            if unfinished:
                self._spawn(self._cancel(unfinished, r, busy))
            scattered.clear()

        elapsed = time.perf_counter() - t0
        if error is not None:
            raise error
        if not decided:
            why = f"timed out after {limit:g} s" if remaining else "every worker answered or died"
            raise NotEnoughWorkers(
                f"round {r} of job {name!r} cannot be decoded: {why}; "
                f"{len(self._answered(order))} of {self.n_workers} workers answered "
                f"{self._answered(order)}, dead: {sorted(dead)}, "
                f"still busy: {sorted(set(remaining) - dead)}",
                dead=dead,
                answered=self._answered(order),
            )
        return RoundResult(
            results=results,
            order=order,
            compute_seconds=seconds,
            cancelled=sorted(set(remaining) - dead),
            dead=sorted(dead),
            seconds=elapsed,
            extra={"backend": "dask", "round": r},
        )

    @staticmethod
    def _answered(order: list[SlotKey]) -> list[int]:
        return list(dict.fromkeys(w for w, _ in order))

    async def _cancel(self, futures: list[distributed.Future], r: int, busy: list[int]) -> None:
        """Cancel the round's leftover tasks and wake the injected delays of ``busy`` workers."""
        with contextlib.suppress(Exception):
            await self.client.cancel(futures, asynchronous=True)
        # addresses looked up now: a worker seen dying meanwhile is not called
        addrs = [a for a in (self._addr[w] for w in busy) if a is not None]
        if addrs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.client.run(
                        _cancel_rounds,
                        self._token,
                        r,
                        workers=addrs,
                        on_error="ignore",
                        asynchronous=True,
                    ),
                    timeout=10,
                )

    def close(self) -> None:
        """Release what the pool placed; close the cluster only if the pool created it."""
        if self._closed:
            return
        self._closed = True
        _EventHub.leave(self.client, self)
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
        addrs = [a for a in self._addr if a is not None]
        if addrs:
            await self.client.run(
                _forget_pool, self._token, workers=addrs, on_error="ignore", asynchronous=True
            )


def _is_lost_worker(value: Any) -> bool:
    exc = value[1] if isinstance(value, tuple) and len(value) == 3 else value
    return isinstance(exc, (distributed.scheduler.KilledWorker, asyncio.CancelledError))


# ---------------------------------------------------------------------------
# Over SSH.


def _local_address_towards(host: str) -> str:
    """The address of this machine on the route to ``host`` (nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((socket.gethostbyname(host), 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def ssh_pool(
    hosts: Sequence[str],
    *,
    connect_options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    python: str | Sequence[str] | None = None,
    scheduler_host: str | None = None,
    worker_options: Mapping[str, Any] | None = None,
    startup_timeout: float = 120.0,
    **kwargs: Any,
) -> DaskPool:
    """Start a Dask cluster over SSH, one named worker per host entry, and pool it.

    Parameters
    ----------
    hosts : sequence of str
        One entry per pool worker; repeat a host to run several workers there.
        Pool worker ``i`` is the Dask worker named ``i`` on ``hosts[i]``, run
        under a nanny that restarts it if it dies.
    connect_options : dict or list of dict, optional
        Keywords for ``asyncssh.connect`` (``port``, ``username``,
        ``client_keys``, ``known_hosts``...), for every host or one per host.
    python : str or list of str, optional
        The interpreter to run on the hosts (default: this one's path).  It
        must import ``sparsecoded`` and ``distributed``.
    scheduler_host : str, optional
        Address the scheduler listens on.  The scheduler runs on the master,
        in this process; the default is this machine's address on the route
        to the first host.
    worker_options : dict, optional
        More keywords for each ``distributed.Worker`` (default: one thread).
    startup_timeout : float
        Seconds to wait for every worker to join.
    **kwargs
        Passed to :class:`DaskPool` (``timeout``, ``poll``, ...).

    Returns
    -------
    DaskPool
        The pool owns the cluster: ``close()`` stops the workers and the scheduler.
    """
    import sys

    from distributed.deploy.spec import SpecCluster
    from distributed.deploy.ssh import Worker as SSHWorker

    hosts = list(hosts)
    if not hosts:
        raise ValueError("hosts is empty, expected at least one host")
    n = len(hosts)

    def per_host(value: Any, what: str) -> list[Any]:
        if value is None or isinstance(value, (str, Mapping)):
            return [value] * n
        value = list(value)
        if len(value) != n:
            raise ValueError(f"{what} has {len(value)} entries, expected one per host ({n})")
        return value

    options = [dict(o or {}) for o in per_host(connect_options, "connect_options")]
    pythons = [p or sys.executable for p in per_host(python, "python")]
    if scheduler_host is None:
        remote = [h for h in hosts if h not in ("localhost", "127.0.0.1", "::1")]
        scheduler_host = _local_address_towards(remote[0]) if remote else "127.0.0.1"
    base = {"nthreads": 1, **dict(worker_options or {})}
    workers = {
        i: {
            "cls": SSHWorker,
            "options": {
                "address": host,
                "connect_options": options[i],
                # the name travels to the remote worker: it survives nanny restarts
                "kwargs": {**base, "name": i},
                "worker_class": "distributed.Nanny",
                "remote_python": pythons[i],
            },
        }
        for i, host in enumerate(hosts)
    }
    scheduler = {
        "cls": distributed.Scheduler,
        "options": {
            "host": scheduler_host,
            "port": 0,
            "dashboard": False,
            # its HTTP endpoints (health, metrics) start anyway: any free port, local only
            "dashboard_address": "127.0.0.1:0",
        },
    }
    cluster = SpecCluster(workers, scheduler, name="sparsecoded-ssh")
    client = None
    try:
        client = distributed.Client(cluster)
        client.wait_for_workers(n, timeout=startup_timeout)
        return DaskPool(client, workers=list(range(n)), _owned=[cluster, client], **kwargs)
    except BaseException:
        if client is not None:
            client.close()
        cluster.close()
        raise
