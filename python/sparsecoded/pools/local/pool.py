"""The embedded worker pool: persistent processes, payloads and operands in shared memory.

:class:`LocalPool` implements :class:`sparsecoded.pools.base.Pool` on one machine.
This module is the master; :mod:`._worker` is the program of the worker
processes, :mod:`._protocol` what the two agree on, and :mod:`._processes` the
master's hold on the processes and segments (what its finalizer releases).

Design
------
- ``n_workers`` processes, started once and kept: fresh interpreters that run
  :mod:`._worker` and import only ``sparsecoded`` (never the user's
  ``__main__``: a script needs no ``if __name__ == "__main__":`` guard).  Each
  has one socket to the master, inherited at start.  The sockets carry only
  small control messages, except the results of ``"matmat"`` (computed once
  per job, so they are pickled through the socket) and any result larger than
  the room reserved for it.
- ``place`` checks the payloads once (:func:`~sparsecoded.pools.base.place_payloads`)
  and copies each worker's payloads into one shared-memory segment per (job,
  worker).  The worker maps it and rebuilds the matrices as views: nothing is
  copied or checked again, whatever the number of rounds.
- A round checks the operand in O(1), writes it once into a shared segment,
  sends every worker a round message, and each worker writes its products,
  one payload after another, into its own result segment, signalling each one
  on its socket as soon as it is written (partial work of a slow device
  counts).  The master waits on the sockets with :mod:`selectors` and stops as
  soon as ``enough`` says so.
- Cancellation is cooperative: a shared counter holds the tag of the last
  decided round.  A worker polls it before and between its payloads and while
  it sleeps an injected delay (in slices of a few ms).  Late answers carry
  their round tag and are dropped.
- A worker that dies is seen at once (socket EOF), reported in
  ``RoundResult.dead`` and respawned when the round ends, with its payloads
  re-placed from the segments the master still holds.
- The master creates, and alone unlinks, every segment.  Workers map them
  without registering them with a resource tracker.  ``close()`` (also run by
  a finalizer at exit, and on ``KeyboardInterrupt`` during a round) stops the
  workers and unlinks every segment.  If the master is killed, the workers see
  their socket close and exit, and the master's resource tracker unlinks what
  it had registered.

Events (a worker died, was respawned, had its payloads re-placed) are logged
at INFO on the ``sparsecoded.pools.local`` logger.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection as mpc
from multiprocessing import shared_memory as mpshm
from typing import Any, cast

import numpy as np

from ...errors import NotEnoughWorkers
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
from . import _protocol as P
from ._processes import MAX_WAIT, Resources, Watch, start_worker
from ._protocol import SHM_PREFIX

__all__ = ["LocalPool", "SHM_PREFIX"]

log = logging.getLogger("sparsecoded.pools.local")

_MAX_BACKLOG = 4  # rounds a worker may still owe before it is skipped (a hung worker)
_MIN_RESULT_AREA = 4096  # bytes: a worker's result area when no job needs more


@dataclass
class _Job(PlacedJob):
    id: int = -1
    segments: list[mpshm.SharedMemory | None] = field(default_factory=list)  # per worker
    place_msgs: list[tuple | None] = field(default_factory=list)  # resent to a respawned worker
    #: per worker, per slot: (rows, value dtype) of a matrix payload, None for a pair
    slots: list[list[tuple[int, np.dtype] | None]] = field(default_factory=list)
    layouts: dict = field(default_factory=dict)  # (n_cols, dtype) -> result room per worker


class LocalPool(PoolBase):
    """``n_workers`` persistent processes on this machine, fed through shared memory.

    Implements :class:`sparsecoded.pools.base.Pool`.  See the module docstring for the
    design.  Not thread-safe: one thread drives a pool.

    Parameters
    ----------
    n_workers : int
        Number of worker processes (>= 1).
    timeout : float
        Default limit, in seconds, of a round (:meth:`run`); ``inf`` means no
        limit.  Start-up waits ``max(timeout, 60)`` seconds: workers import
        numpy and scipy, which takes seconds on a loaded machine.
    threads_per_worker : int
        OpenMP threads of each kernel call on a worker (>= 1).

    Notes
    -----
    POSIX only (Linux, macOS): the workers inherit their socket through
    ``pass_fds`` and the segments are POSIX shared memory.
    ``"matvec"`` results come back through shared memory; ``"matmat"`` results
    (computed once per job, possibly sparse) are pickled through the worker's
    socket, as is any result larger than the room reserved for it.
    A ``KeyboardInterrupt`` (or other non-``Exception``) during a round closes
    the pool before it propagates.  An injected ``Action.delay`` is slept once,
    before the worker's first payload; ``Action.crash`` makes the worker SIGKILL
    itself after that delay, before it computes anything (if the round is decided
    first, the master kills it: the death is always reported by that round).
    Known limitation: a worker checks for cancellation only between payloads,
    so one long kernel call runs to its end even when its round is decided.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparsecoded import LocalPool
    >>> blocks = [sp.random_array((3, 4), density=0.5, random_state=i) for i in range(2)]
    >>> with LocalPool(2) as pool:  # doctest: +SKIP
    ...     pool.place("job", [[b] for b in blocks])
    ...     r = pool.run("job", "matvec", np.ones(4), enough=lambda res: len(res) == 2)
    >>> np.allclose(r.results[(1, 0)], blocks[1] @ np.ones(4))  # doctest: +SKIP
    True
    """

    def __init__(self, n_workers: int, *, timeout: float = 60.0, threads_per_worker: int = 1):
        if isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)):
            raise TypeError(f"n_workers must be an int, got {type(n_workers).__name__}")
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.n_workers = int(n_workers)
        self.timeout = check_timeout(timeout)
        self.threads_per_worker = check_threads(threads_per_worker)
        self._res = Resources()
        self._finalizer = weakref.finalize(self, self._res.shutdown)
        self._jobs: dict[Any, _Job] = {}
        self._next_job_id = 0
        self._tag = 0
        self._operand: mpshm.SharedMemory | None = None
        self._result_segs: list[mpshm.SharedMemory] = []
        self._backlog: list[deque[int]] = [deque() for _ in range(self.n_workers)]
        self._to_respawn: set[int] = set()
        self._dtypes: dict[str, np.dtype] = {}
        self._watch = Watch()
        try:
            self._res.ctrl = self._res.new_segment(P.CTRL.size)
            P.CTRL.pack_into(P.mapped(self._res.ctrl), 0, 0)
            for _ in range(self.n_workers):
                self._result_segs.append(self._res.new_segment(_MIN_RESULT_AREA))
                self._res.procs.append(None)
                self._res.conns.append(None)
            for w in range(self.n_workers):
                self._spawn(w)
            self._await_ready()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- lifecycle

    def _spawn(self, w: int) -> None:
        proc, conn = start_worker(
            w, self._res.control().name, self._result_segs[w].name, self.threads_per_worker
        )
        self._res.procs[w] = proc
        self._res.conns[w] = conn
        self._watch.add(w, conn)
        self._backlog[w].clear()

    def _await_ready(self) -> None:
        limit = max(self.timeout, 60.0)
        deadline = time.monotonic() + limit
        waiting = set(range(self.n_workers))
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"workers {sorted(waiting)} did not start within {limit} s")
            ready = mpc.wait([self._res.conn(w) for w in waiting], min(left, MAX_WAIT))
            # wait() returns the objects it was given (its stub: any waitable)
            for conn in cast("list[mpc.Connection]", ready):
                w = self._res.conns.index(conn)
                try:
                    conn.recv_bytes()
                except EOFError:
                    code = self._exit_code(w)
                    raise RuntimeError(
                        f"worker {w} exited during start-up (exit code {code})"
                    ) from None
                waiting.discard(w)

    def _respawn(self, w: int) -> None:
        proc, conn = self._res.procs[w], self._res.conns[w]
        self._watch.remove(w)  # before its fd closes and its number gets reused
        if conn is not None:
            conn.close()
        if proc is not None:
            self._res.stop_process(proc, 0.1)
        self._res.procs[w] = self._res.conns[w] = None
        self._spawn(w)
        msgs = [msg for job in self._jobs.values() if (msg := job.place_msgs[w]) is not None]
        log.info(
            "LocalPool worker %d respawned (pid %d); re-placing %d jobs on it",
            w, self._res.proc(w).pid, len(msgs),
        )  # fmt: skip
        for msg in msgs:
            self._send(w, msg)

    def _respawn_pending(self) -> list[int]:
        done = sorted(self._to_respawn)
        for w in done:
            self._respawn(w)
            self._to_respawn.discard(w)
        return done

    def _respawn_quietly(self) -> None:
        # the new workers start while the caller decodes; on failure this is tried
        # again at the start of the next round, which then raises
        try:
            self._respawn_pending()
        except Exception:
            pass

    def _send(self, w: int, msg: tuple) -> bool:
        try:
            self._res.conn(w).send_bytes(P.dumps(msg))
            return True
        except OSError:  # BrokenPipeError: the worker is gone
            self._lost(w)
            return False

    def close(self) -> None:
        """Stop every worker and unlink every shared segment.  Idempotent.

        Interrupted (a second Ctrl-C while it waits for the workers), the pool is
        closed all the same and a later call (or the finalizer at exit) finishes.
        """
        if self._closed_reason is None:
            self._closed_reason = "close() was called"
        self._jobs.clear()
        self._operand = None
        self._result_segs = []
        if self._finalizer.alive:
            # shutdown itself, not the finalizer: calling a finalizer detaches it
            # first, so an interrupted shutdown would never be run again
            self._res.shutdown()
            self._finalizer.detach()
            self._watch.close()

    @property
    def pids(self) -> list[int | None]:
        """Process id of each worker (a respawned worker has a new one)."""
        self._check_open()
        return [p.pid if p is not None else None for p in self._res.procs]

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._jobs)} jobs"
        return f"LocalPool(n_workers={self.n_workers}, timeout={self.timeout}, {state})"

    # ----------------------------------------------------------------- payloads

    def place(self, job: str, payloads: Sequence[Sequence[Any]]) -> None:
        """Store ``payloads[w]`` (a list of blocks) on worker ``w`` under ``job``.

        Blocks are scipy sparse matrices or 2-D numpy arrays (kept as CSR; other
        formats are converted once), or pairs ``(A_coded, B_coded)`` for
        ``"matmat"``; each is checked in full here, once.  A job placed again
        replaces the old payloads.
        """
        self._check_open()
        placed = place_payloads(payloads, self.n_workers)
        # Build every segment first: a failure here (EMFILE, ENOSPC, Ctrl-C) frees what
        # was built and leaves the pool as it was, the old job under this key included.
        record = _Job(
            [], placed.n_cols, placed.dtype, placed.first_matrix, placed.first_pair,
            id=self._next_job_id,
        )  # fmt: skip
        try:
            for blocks in placed.payloads:
                arrays: list[np.ndarray] = []
                seen: dict[int, int] = {}  # a factor shared by several pairs is stored once
                specs = [P.to_spec(b, arrays, seen) for b in blocks]
                record.slots.append(
                    [
                        (b.shape[0], b.data.dtype) if b.__class__ is not tuple else None
                        for b in blocks
                    ]
                )
                if not specs:
                    record.segments.append(None)
                    record.place_msgs.append(None)
                    continue
                metas, size = P.layout(arrays)
                shm = self._res.new_segment(size)
                record.segments.append(shm)
                P.fill(shm, metas, arrays)
                record.place_msgs.append((P.M_PLACE, record.id, shm.name, metas, specs))
        except BaseException:
            for seg in record.segments:
                self._res.free_segment(seg)
            raise
        self._next_job_id += 1
        # Then swap the jobs and tell the workers.  A message cut in half (Ctrl-C
        # inside a send) would desynchronise that socket: as in a round, that closes
        # the pool.  A send to a dead worker just marks it for respawn.
        try:
            self._drop(job, shrink=False)
            self._jobs[job] = record
            for w, msg in enumerate(record.place_msgs):
                if msg is not None:
                    self._send(w, msg)
        except Exception:
            raise
        except BaseException:
            self._closed_reason = "closed by a KeyboardInterrupt during place()"
            self.close()
            raise
        self._respawn_pending()

    def drop(self, job: str) -> None:
        """Free what ``job`` placed (nothing happens for a job not placed).

        Its payload segments are unlinked, and the operand and result areas
        shrink to what the jobs still placed need.
        """
        self._check_open()
        self._drop(job, shrink=True)

    def _drop(self, job: str, *, shrink: bool) -> None:
        record = self._jobs.pop(job, None)
        if record is None:
            return
        for w, shm in enumerate(record.segments):
            if shm is not None:
                self._send(w, (P.M_DROP, record.id))
                self._res.free_segment(shm)
        if not shrink:
            return
        if not self._jobs:
            self._res.free_segment(self._operand)  # a late worker keeps its mapping
            self._operand = None
        for w, seg in enumerate(self._result_segs):
            need = max(
                [_MIN_RESULT_AREA]
                + [lay[w][1] for j in self._jobs.values() for lay in j.layouts.values()]
            )
            if seg.size > need:
                self._result_segs[w] = self._res.new_segment(need)
                self._send(w, (P.M_RESSEG, self._result_segs[w].name))
                self._res.free_segment(seg)

    # ----------------------------------------------------------------- rounds

    def _layout(self, record: _Job, x: np.ndarray) -> list[tuple]:
        """Where each worker writes each slot's result: ((offset, room) per slot) per worker."""
        n_cols = 1 if x.ndim == 1 else x.shape[1]
        key = (n_cols, x.dtype.str)
        layout = record.layouts.get(key)
        if layout is None:
            layout = []
            for slots in record.slots:
                rooms, offset = [], 0
                for slot in slots:
                    if slot is None:  # check_operand gives pair jobs no operand
                        raise RuntimeError("a pair payload was given a matvec operand")
                    rows, dtype = slot
                    itemsize = np.result_type(dtype, x.dtype).itemsize
                    room = P.align(rows * n_cols * itemsize)
                    rooms.append((offset, room))
                    offset += room
                layout.append((tuple(rooms), offset))
            record.layouts[key] = layout
        reserved = []
        for w, (rooms, total) in enumerate(layout):
            if total > self._result_segs[w].size:
                old = self._result_segs[w]
                self._result_segs[w] = self._res.new_segment(max(total, 2 * old.size))
                self._send(w, (P.M_RESSEG, self._result_segs[w].name))
                self._res.free_segment(old)
            reserved.append(rooms)
        return reserved

    def _write_operand(self, x: np.ndarray) -> tuple:
        if self._operand is None or self._operand.size < x.nbytes:
            old = self._operand
            size = max(x.nbytes, 4096, 0 if old is None else 2 * old.size)
            self._operand = self._res.new_segment(size)
            self._res.free_segment(old)  # late workers keep their mapping; none maps it anew
        np.ndarray(x.shape, x.dtype, buffer=self._operand.buf)[...] = x
        return (self._operand.name, x.shape, x.dtype.str)

    def _dtype(self, code: str) -> np.dtype:
        dt = self._dtypes.get(code)
        if dt is None:
            dt = self._dtypes[code] = np.dtype(code)
        return dt

    def _drain(self, workers: Sequence[int] | None = None) -> list[int]:
        """Read what workers sent after earlier rounds were decided; return workers found
        dead (all ready workers, or only those of ``workers``)."""
        dead = []
        for w in self._watch.wait(0.0):
            if w in self._to_respawn or (workers is not None and w not in workers):
                continue
            conn = self._res.conn(w)
            try:
                while conn.poll():
                    self._note_done(w, pickle.loads(conn.recv_bytes()))
            except (EOFError, OSError):
                self._lost(w)
                dead.append(w)
        return dead

    def _lost(self, w: int) -> None:
        """Worker ``w`` is dead (or unusable): stop watching it, respawn it later."""
        if w not in self._to_respawn:
            log.info("LocalPool worker %d died; it is respawned after this round", w)
        self._to_respawn.add(w)
        self._watch.remove(w)

    def _note_done(self, w: int, msg: tuple) -> None:
        """Track which rounds a worker has finished (for the backlog guard)."""
        kind = msg[0]
        if kind in (P.W_CANCELLED, P.W_ERR) or (kind in (P.W_SHM, P.W_PIPE) and msg[4]):
            backlog = self._backlog[w]
            while backlog and backlog[0] <= msg[1]:
                backlog.popleft()

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
        """One round of ``op`` on the payloads of ``job`` (see :meth:`.Pool.run`).

        ``RoundResult.extra`` holds ``round`` (the pool's round tag), ``arrival``
        (seconds from broadcast to each result's arrival), ``respawned`` and
        ``died_between_rounds`` (workers found dead, and respawned, before the
        broadcast), ``skipped`` (workers still busy with too many earlier rounds
        to be sent this one; also listed in ``cancelled``).

        Raises
        ------
        NotEnoughWorkers
            As soon as every live worker has answered or died and ``enough`` is
            still False; :class:`~sparsecoded.errors.RoundTimeout` when
            ``timeout`` (default: the pool's) passes.
        ValueError
            Unknown op or job, an operand that is not a float32/float64 vector or
            matrix of the payloads' column count, ``actions`` of the wrong length.
        """
        record, x, limit = self._start_round(job, op, operand, actions, timeout)
        try:
            return self._run(job, record, op, x, enough, actions, limit)
        except Exception:
            raise
        except BaseException:
            # Ctrl-C (or exit) mid-round: a socket may hold half a message; stop everything.
            self._closed_reason = "closed by a KeyboardInterrupt during a round"
            self.close()
            raise

    def _run(self, job, record, op, x, enough, actions, timeout) -> RoundResult:
        between = self._drain()
        respawned = self._respawn_pending()
        self._tag += 1
        tag = self._tag
        extra: dict[str, Any] = {
            "round": tag,
            "respawned": respawned,
            "died_between_rounds": between,
        }
        xmeta = reserved = None
        if x is not None:
            xmeta = self._write_operand(x)
            reserved = self._layout(record, x)
        pending: dict[int, int] = {}  # worker -> results still owed
        skipped: list[int] = []
        dead: list[int] = []
        crashing: list[int] = []
        st = _RoundState(tag, job, enough, {}, [], {}, {}, pending, time.perf_counter())

        def round_result(elapsed: float) -> RoundResult:
            # the round as it stands: decided, or (for NotEnoughWorkers.partial) given up
            extra["skipped"] = skipped
            extra["arrival"] = st.arrival
            return RoundResult(
                results=st.results,
                order=st.order,
                compute_seconds=st.seconds,
                cancelled=sorted(set(pending) | set(skipped)),
                dead=sorted(dead),
                seconds=elapsed,
                extra=extra,
            )

        try:
            for w, slots in enumerate(record.slots):
                if not slots:
                    continue
                if len(self._backlog[w]) >= _MAX_BACKLOG:
                    skipped.append(w)
                    continue
                act = actions[w] if actions is not None else None
                delay, crash = (
                    (float(act.delay), bool(act.crash)) if act is not None else (0.0, False)
                )
                room = None if reserved is None else reserved[w]
                if self._send(w, (P.M_ROUND, tag, record.id, op, xmeta, delay, crash, room)):
                    self._backlog[w].append(tag)
                    pending[w] = len(slots)
                    if crash:
                        crashing.append(w)
                else:
                    dead.append(w)
            decided = not pending and enough(st.results)
            deadline = time.monotonic() + timeout
            while not decided:
                if not pending:
                    raise self._round_failed(
                        job, "enough(results) is still False with every live worker done",
                        order=st.order, n_results=len(st.results), dead=dead, timed_out=False,
                        partial=round_result(time.perf_counter() - st.t0),
                        more=self._dead_note(dead, respawned, skipped),
                    )  # fmt: skip
                left = deadline - time.monotonic()
                if left <= 0:
                    self._finish_crashes(crashing, pending, dead)
                    raise self._round_failed(
                        job, f"timed out after {timeout:g} s",
                        order=st.order, n_results=len(st.results), dead=dead, timed_out=True,
                        more=f"; still busy (cancelled): {sorted(pending)}",
                    )  # fmt: skip
                for w in self._watch.wait(left):
                    if w in self._to_respawn:
                        continue  # found dead earlier in this batch
                    try:
                        # one message per readiness: the next wait returns at once if more
                        if self._take(w, pickle.loads(self._res.conn(w).recv_bytes()), st):
                            decided = True
                            break
                    except (EOFError, OSError):
                        self._lost(w)
                        dead.append(w)
                        pending.pop(w, None)
            # report workers already dead at the decision, without waiting for any
            for w in self._drain(list(pending)):
                dead.append(w)
                del pending[w]
            self._finish_crashes(crashing, pending, dead)
            elapsed = time.perf_counter() - st.t0
        except NotEnoughWorkers:
            self._respawn_quietly()
            raise
        finally:
            # cancel whoever still works on it
            P.CTRL.pack_into(P.mapped(self._res.control()), 0, tag)
        self._respawn_quietly()
        return round_result(elapsed)

    def _finish_crashes(self, crashing: list[int], pending: dict, dead: list[int]) -> None:
        """Kill the workers told to crash in this round that have not died yet.

        A worker told to crash kills itself once it reads the round; when the round
        is decided before that, the master does it, so the death always belongs to
        (and is reported by) the round whose actions asked for it.
        """
        for w in crashing:
            if w in pending:
                self._res.proc(w).kill()
                self._lost(w)
                dead.append(w)
                del pending[w]

    def _take(self, w: int, msg: tuple, st: _RoundState) -> bool:
        """Handle one message of worker ``w``; True when the round is decided."""
        self._note_done(w, msg)
        kind = msg[0]
        if msg[1] != st.tag or kind == P.W_READY:
            return False  # stale: an earlier round's, or a respawned worker saying hello
        if kind == P.W_SHM or kind == P.W_PIPE:
            key = (w, msg[2])
            if kind == P.W_SHM:
                shape, dt, off = msg[5], msg[6], msg[7]
                buf = self._result_segs[w].buf
                value = np.ndarray(shape, self._dtype(dt), buffer=buf, offset=off).copy()
            else:
                value = msg[5]
            st.results[key] = value
            st.order.append(key)
            st.seconds[key] = msg[3]
            st.arrival[key] = time.perf_counter() - st.t0
            left = st.pending[w] - 1
            if left:
                st.pending[w] = left
            else:
                del st.pending[w]
            return bool(st.enough(st.results))
        if kind == P.W_ERR:
            self._raise_worker_error(w, st.job, msg)
        if kind == P.W_CANCELLED:  # cannot happen before the decision; be safe
            st.pending.pop(w, None)
        return False

    def _dead_note(self, dead: list[int], respawned: list[int], skipped: list[int]) -> str:
        text = ""
        if dead:
            codes = ", ".join(self._exit_code(w) for w in sorted(dead))
            text += f" (exit codes [{codes}]; respawned for the next round)"
        if respawned:
            text += f"; respawned before this round: {respawned}"
        if skipped:
            text += f"; skipped, still busy with earlier rounds: {skipped}"
        return text

    def _exit_code(self, w: int) -> str:
        """Exit code of dead worker ``w``; its EOF can come just before it is reaped."""
        proc = self._res.procs[w]
        if proc is None:
            return "unknown"
        try:
            proc.wait(0.5)  # returns as soon as it is reaped
        except subprocess.TimeoutExpired:
            return "unknown"
        return str(proc.returncode)

    def _raise_worker_error(self, w: int, job: Any, msg: tuple) -> None:
        _, _, slot, exc, text = msg
        part = f"payload {slot}" if slot >= 0 else "the round set-up"
        where = f"in LocalPool worker {w}, {part} of job {job!r}"
        if hasattr(exc, "add_note"):
            exc.add_note(where + (f"; worker traceback:\n{text}" if text else ""))
            raise exc
        raise RuntimeError(f"{type(exc).__name__}: {exc} ({where})") from exc


@dataclass
class _RoundState:
    tag: int
    job: Any
    enough: Callable[[Mapping[SlotKey, Any]], bool]
    results: dict
    order: list
    seconds: dict
    arrival: dict
    pending: dict
    t0: float
