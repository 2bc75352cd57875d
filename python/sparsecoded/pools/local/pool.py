"""The embedded worker pool: persistent processes, payloads and operands in shared memory.

:class:`LocalPool` implements :class:`sparsecoded.pools.base.Pool` on one machine.

Design
------
- ``n_workers`` processes from the ``spawn`` start method, started once and kept.
  Each has one duplex pipe to the master.  The pipes carry only small control
  messages, except the results of ``"matmat"`` (computed once per job, so they
  are pickled through the pipe) and any result larger than the room reserved
  for it.
- ``place`` copies each worker's payloads (CSR blocks, dense blocks, or tuples
  of them such as the ``(A_coded, B_coded)`` pair of ``"matmat"``) into one
  shared-memory segment per (job, worker).  The worker maps it and rebuilds
  the matrices as views: nothing is copied again, whatever the number of rounds.
- A round writes the operand once into a shared segment, sends every worker a
  round message, and each worker writes ``compute(op, payload, x)`` for its
  payloads, one after another, into its own result segment, signalling each
  one on its pipe as soon as it is written (partial work of a slow device
  counts).  The master waits with :func:`multiprocessing.connection.wait` on
  the pipes and the process sentinels, and stops as soon as ``enough`` says so.
- Cancellation is cooperative: a shared counter holds the tag of the last
  decided round.  A worker polls it before and between its payloads and while
  it sleeps an injected delay (in slices of a few ms).  Late answers carry
  their round tag and are dropped.
- A worker that dies is seen at once (pipe EOF or sentinel), reported in
  ``RoundResult.dead`` and respawned when the round ends, with its payloads
  re-placed from the segments the master still holds.
- The master creates, and alone unlinks, every segment.  Workers map them
  without registering them with the resource tracker, so a late or killed
  worker can never make the tracker unlink (or complain about) a segment the
  master still owns.  ``close()`` (also run by a finalizer at exit, and on
  ``KeyboardInterrupt`` during a round) stops the workers and unlinks every
  segment.  If the master is killed, the workers see their pipe close and
  exit, and the resource tracker unlinks what the master had registered.

Workers must be importable by a fresh interpreter (``spawn``): a script that
builds a pool needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import math
import os
import pickle
import secrets
import select
import signal
import struct
import sys
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection as mpc
from multiprocessing import get_context
from multiprocessing import shared_memory as mpshm
from typing import Any

import numpy as np

from ...errors import NotEnoughWorkers, PoolClosed
from ...stragglers import Action
from ..base import RoundResult, SlotKey, check_round_args, check_timeout, compute

__all__ = ["LocalPool", "SHM_PREFIX"]

#: every shared-memory segment of a pool is named ``SHM_PREFIX + "<master pid>_<random>"``
SHM_PREFIX = "spcd_"

_OPERAND_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_ALIGN = 64  # every array in a segment starts on a cache line
_SLICE = 0.005  # seconds: how often an injected delay looks at the cancel counter
_MAX_BACKLOG = 4  # rounds a worker may still owe before it is skipped (a hung worker)
_CANCEL_ALL = 1 << 62  # counter value that cancels every round, at close
_CTRL = struct.Struct("q")  # the counter: tag of the last decided round
_MAX_WAIT = 3600.0  # seconds: the longest single wait (a longer timeout waits again)

# message kinds (short: they are pickled every round)
_M_ROUND, _M_PLACE, _M_DROP, _M_RESSEG, _M_STOP = "r", "p", "d", "s", "x"
_W_READY, _W_SHM, _W_PIPE, _W_CANCELLED, _W_ERR = "R", "S", "P", "C", "E"


def _dumps(msg: tuple) -> bytes:
    # plain pickle: Connection.send's ForkingPickler costs ~10 us more a message, and
    # nothing sent here needs its reducers (no connections or fds travel)
    return pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _segment_name() -> str:
    # short enough for macOS (31 characters); the pid tells whose segment it is
    return f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(5)}"


def _attach(name: str) -> mpshm.SharedMemory:
    """Map an existing segment without registering it with the resource tracker.

    The tracker is shared with the master (spawn passes its pipe on) and keeps a
    *set* of names: a worker's registration would be undone by the master's
    unlink, or outlive it and make the tracker unlink or warn about it later.
    """
    if sys.version_info >= (3, 13):
        return _close_fd(mpshm.SharedMemory(name=name, track=False))
    from multiprocessing import resource_tracker

    # Only ever called in a worker process, from its single thread.
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return _close_fd(mpshm.SharedMemory(name=name))
    finally:
        resource_tracker.register = register


def _close_fd(shm: mpshm.SharedMemory) -> mpshm.SharedMemory:
    """Close the descriptor SharedMemory keeps besides its mapping (mmap holds its own).

    A segment then costs one descriptor, not two; nothing reads ``_fd`` again but
    ``close()``, which skips it when it is -1.
    """
    fd = getattr(shm, "_fd", -1)
    if fd >= 0:
        os.close(fd)
        shm._fd = -1
    return shm


def _close_quietly(shm: mpshm.SharedMemory | None) -> None:
    if shm is None:
        return
    try:
        shm.close()
    except BufferError:
        # A view is still alive somewhere (a traceback); the mapping goes with the process.
        pass


# --------------------------------------------------------------------------- payloads


def _to_spec(obj: Any, arrays: list[np.ndarray], where: str) -> tuple:
    """Describe ``obj`` as a nested spec; the arrays to copy are appended to ``arrays``."""
    import scipy.sparse as sp

    if sp.issparse(obj):
        kind = "csr_matrix" if isinstance(obj, sp.csr_matrix) else "csr_array"
        if obj.format != "csr":
            obj = sp.csr_array(obj)  # other formats: converted once, here, on purpose
        parts = []
        for arr in (obj.data, obj.indices, obj.indptr):
            parts.append(len(arrays))
            arrays.append(np.ascontiguousarray(arr))
        return (kind, tuple(int(s) for s in obj.shape), tuple(parts))
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError(f"{where} is an object array, expected a numeric array")
        arrays.append(np.ascontiguousarray(obj))
        return ("dense", len(arrays) - 1)
    if isinstance(obj, (tuple, list)):
        return ("tuple", tuple(_to_spec(o, arrays, f"{where}[{i}]") for i, o in enumerate(obj)))
    raise TypeError(
        f"{where} is a {type(obj).__name__}, expected a scipy sparse matrix, "
        "a numpy array or a tuple of them"
    )


def _leaf_shape(spec: tuple, metas: list[tuple]) -> tuple[int, ...] | None:
    if spec[0] in ("csr_array", "csr_matrix"):
        return spec[1]
    if spec[0] == "dense":
        return metas[spec[1]][2]
    return None


def _leaf_dtype(spec: tuple, metas: list[tuple]) -> np.dtype:
    index = spec[2][0] if spec[0] in ("csr_array", "csr_matrix") else spec[1]
    return np.dtype(metas[index][1])


def _from_spec(spec: tuple, views: list[np.ndarray]) -> Any:
    import scipy.sparse as sp

    kind = spec[0]
    if kind == "dense":
        return views[spec[1]]
    if kind == "tuple":
        return tuple(_from_spec(s, views) for s in spec[1])
    cls = sp.csr_matrix if kind == "csr_matrix" else sp.csr_array
    data, indices, indptr = (views[i] for i in spec[2])
    return cls((data, indices, indptr), shape=spec[1], copy=False)


def _fill(shm: mpshm.SharedMemory, metas: Sequence[tuple], arrays: Sequence[np.ndarray]) -> None:
    for view, arr in zip(_views(shm, metas), arrays, strict=True):
        view[...] = arr


def _views(shm: mpshm.SharedMemory, metas: Sequence[tuple]) -> list[np.ndarray]:
    return [
        np.ndarray(shape, dtype=np.dtype(dt), buffer=shm.buf, offset=off)
        for off, dt, shape in metas
    ]


# --------------------------------------------------------------------------- worker side


class _MasterGone(BaseException):
    """The master died: the worker leaves (a BaseException, so no handler reports it)."""


class _Worker:
    """State and loop of one worker process."""

    def __init__(self, index: int, conn: mpc.Connection, ctrl: str, res: str):
        self.index = index
        self.conn = conn
        self.ppid = os.getppid()
        self.ctrl = _attach(ctrl)
        self.res: mpshm.SharedMemory | None
        try:
            self.res = _attach(res)
        except FileNotFoundError:
            # a respawned worker: the master grew (and freed) this segment before we
            # mapped it; the resize message that names the new one is in the pipe.
            # Until it is read, results go through the pipe.
            self.res = None
        self.op: mpshm.SharedMemory | None = None
        # job id -> (segment, payload list) or (None, reason it could not be placed)
        self.jobs: dict[int, tuple[mpshm.SharedMemory | None, Any]] = {}

    def cancelled(self, tag: int) -> bool:
        return _CTRL.unpack_from(self.ctrl.buf, 0)[0] >= tag

    def sleep(self, seconds: float, tag: int) -> bool:
        """Sleep ``seconds`` unless round ``tag`` is decided first; True if it slept it all."""
        end = time.monotonic() + seconds
        while not self.cancelled(tag):
            left = end - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, _SLICE))
            if os.getppid() != self.ppid:
                raise _MasterGone
        return False

    def loop(self) -> None:
        self.conn.send_bytes(_dumps((_W_READY, os.getpid())))
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return  # the master is gone
            kind = msg[0]
            if kind == _M_ROUND:
                self.round(*msg[1:])
            elif kind == _M_PLACE:
                self.place(*msg[1:])
            elif kind == _M_DROP:
                self.drop(msg[1])
            elif kind == _M_RESSEG:
                _close_quietly(self.res)
                try:
                    self.res = _attach(msg[1])
                except FileNotFoundError:
                    # already replaced again while this worker was busy: a newer
                    # message follows; until then results go through the pipe
                    self.res = None
            elif kind == _M_STOP:
                return

    def place(self, job: int, name: str, metas: list[tuple], specs: list[tuple]) -> None:
        self.drop(job)
        try:
            shm = _attach(name)
        except FileNotFoundError:
            # dropped by the master before this message was read: a drop message follows
            self.jobs[job] = (None, f"segment {name} was gone when worker {self.index} mapped it")
            return
        try:
            views = _views(shm, metas)
            self.jobs[job] = (shm, [_from_spec(s, views) for s in specs])
        except Exception as exc:  # reported by the first round of this job
            views = None
            _close_quietly(shm)
            self.jobs[job] = (None, f"worker {self.index} could not rebuild its payloads: {exc!r}")

    def drop(self, job: int) -> None:
        entry = self.jobs.pop(job, None)
        if entry is not None:
            shm, payloads = entry
            del payloads, entry
            _close_quietly(shm)

    def operand(self, meta: tuple | None) -> np.ndarray | None:
        if meta is None:
            return None
        name, shape, dtype = meta
        if self.op is None or self.op.name.lstrip("/") != name:
            _close_quietly(self.op)
            self.op = None
            self.op = _attach(name)
        x = np.ndarray(shape, dtype=np.dtype(dtype), buffer=self.op.buf)
        x.flags.writeable = False
        return x

    def send(self, msg: tuple) -> None:
        self.conn.send_bytes(_dumps(msg))

    def round(self, tag, job, op, xmeta, delay, crash, reserved) -> None:
        try:
            self._round(tag, job, op, xmeta, delay, crash, reserved)
        except Exception as exc:  # a worker reports its failures, it does not die of them
            self.send_error(tag, -1, exc)

    def _round(self, tag, job, op, xmeta, delay, crash, reserved) -> None:
        send = self.send
        if self.cancelled(tag) or (delay > 0 and not self.sleep(delay, tag)):
            send((_W_CANCELLED, tag))
            return
        if crash:
            os.kill(os.getpid(), signal.SIGKILL)
        # the master names the job (it alone knows it) in a note on this error
        shm, payloads = self.jobs.get(job, (None, f"the job is not placed on worker {self.index}"))
        if shm is None:
            send((_W_ERR, tag, -1, RuntimeError(payloads), ""))
            return
        try:
            x = self.operand(xmeta)
        except FileNotFoundError:
            if self.cancelled(tag):  # the master moved on and freed the old operand
                send((_W_CANCELLED, tag))
                return
            raise
        last = len(payloads) - 1
        for slot, payload in enumerate(payloads):
            if self.cancelled(tag):
                send((_W_CANCELLED, tag))
                return
            t0 = time.perf_counter()
            try:
                out = compute(op, payload, x)
            except Exception as exc:  # sent to the master, which raises it
                self.send_error(tag, slot, exc)
                return
            seconds = time.perf_counter() - t0
            if self.cancelled(tag):
                send((_W_CANCELLED, tag))
                return
            if reserved is not None and self.res is not None and type(out) is np.ndarray:
                offset, room = reserved[slot]
                if out.nbytes <= room and offset + out.nbytes <= self.res.size:
                    np.ndarray(out.shape, out.dtype, buffer=self.res.buf, offset=offset)[...] = out
                    send(
                        (_W_SHM, tag, slot, seconds, slot == last, out.shape, out.dtype.str, offset)
                    )
                    continue
            send((_W_PIPE, tag, slot, seconds, slot == last, out))

    def send_error(self, tag: int, slot: int, exc: Exception) -> None:
        text = traceback.format_exc()
        try:
            self.send((_W_ERR, tag, slot, exc, text))
        except Exception:  # the exception does not pickle: send its text
            self.send((_W_ERR, tag, slot, RuntimeError(repr(exc)), text))

    def release(self) -> None:
        for job in list(self.jobs):
            self.drop(job)
        for shm in (self.op, self.res, self.ctrl):
            _close_quietly(shm)
        self.conn.close()


def _worker_main(index: int, conn: mpc.Connection, ctrl: str, res: str) -> None:
    # Ctrl-C reaches the whole process group: the master alone decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ... import kernels  # noqa: F401  (import the compute path before saying ready)

    worker = _Worker(index, conn, ctrl, res)
    try:
        worker.loop()
    except (_MasterGone, BrokenPipeError, ConnectionResetError):
        pass
    finally:
        worker.release()
    # Everything the worker held is released above; skipping the interpreter's
    # teardown (numpy, scipy) makes close() several times faster on a busy machine.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --------------------------------------------------------------------------- master side


@dataclass
class _Job:
    id: int
    segments: list[mpshm.SharedMemory | None]  # per worker (None: no payload)
    place_msgs: list[tuple | None]  # per worker, resent to a respawned worker
    specs: list[list[tuple]]  # per worker, per slot
    metas: list[list[tuple]]
    layouts: dict = field(default_factory=dict)  # (n_cols, dtype) -> result room per worker


class _Resources:
    """Everything that must be released; the finalizer holds this, never the pool."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.procs: list[Any] = []
        self.conns: list[mpc.Connection | None] = []
        self.segments: dict[str, mpshm.SharedMemory] = {}
        self.ctrl: mpshm.SharedMemory | None = None

    def new_segment(self, size: int) -> mpshm.SharedMemory:
        shm = mpshm.SharedMemory(name=_segment_name(), create=True, size=max(int(size), 1))
        self.segments[shm.name] = shm
        _close_fd(shm)
        return shm

    def free_segment(self, shm: mpshm.SharedMemory | None) -> None:
        if shm is None:
            return
        self.segments.pop(shm.name, None)
        _close_quietly(shm)
        try:
            shm.unlink()
        except FileNotFoundError:
            pass

    def stop_process(self, proc: Any, grace: float) -> None:
        proc.join(grace)
        if proc.exitcode is None:
            proc.kill()
            proc.join(5.0)
        if proc.exitcode is not None:
            proc.close()

    def shutdown(self) -> None:
        """Unlink every segment, then stop every worker.  Idempotent, and safe to call
        again after an interruption (a second Ctrl-C during the join): it finishes."""
        if os.getpid() != self.owner:  # a forked copy of the master must not stop our workers
            return
        if self.ctrl is not None:
            _CTRL.pack_into(self.ctrl.buf, 0, _CANCEL_ALL)
        # Segments first: unlinking is instant, and the workers keep their mappings.
        for shm in list(self.segments.values()):
            self.free_segment(shm)
        self.ctrl = None
        try:
            for i, conn in enumerate(self.conns):
                if conn is not None:
                    try:
                        conn.send((_M_STOP,))
                    except OSError:
                        pass
                    # closing our end also frees a worker blocked sending us a large result
                    conn.close()
                    self.conns[i] = None
            deadline = time.monotonic() + 2.0
            for i, proc in enumerate(self.procs):
                if proc is not None:
                    self.stop_process(proc, max(deadline - time.monotonic(), 0.05))
                    self.procs[i] = None
        finally:
            # interrupted: wait no more, kill the rest; the next call reaps them
            for proc in self.procs:
                if proc is not None:
                    try:
                        proc.kill()
                    except (OSError, ValueError):
                        pass
        self.procs.clear()
        self.conns.clear()


class LocalPool:
    """``n_workers`` persistent processes on this machine, fed through shared memory.

    Implements :class:`sparsecoded.pools.base.Pool`.  See the module docstring for the
    design.  Not thread-safe: one thread drives a pool.

    Parameters
    ----------
    n_workers : int
        Number of worker processes (>= 1).
    timeout : float
        Default limit, in seconds, of a round (:meth:`run`); ``inf`` means no
        limit.  Start-up waits ``max(timeout, 60)`` seconds: spawned workers
        import numpy and scipy, which takes seconds on a loaded machine.

    Notes
    -----
    ``"matvec"`` results come back through shared memory; ``"matmat"`` results
    (computed once per job, possibly sparse) are pickled through the worker's
    pipe, as is any result larger than the room reserved for it.
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

    def __init__(self, n_workers: int, *, timeout: float = 60.0):
        if isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)):
            raise TypeError(f"n_workers must be an int, got {type(n_workers).__name__}")
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.n_workers = int(n_workers)
        self.timeout = check_timeout(timeout)
        self._ctx = get_context("spawn")
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.shutdown)
        self._closed_reason: str | None = None
        self._jobs: dict[Any, _Job] = {}
        self._next_job_id = 0
        self._tag = 0
        self._operand: mpshm.SharedMemory | None = None
        self._result_segs: list[mpshm.SharedMemory] = []
        self._backlog: list[deque[int]] = [deque() for _ in range(self.n_workers)]
        self._to_respawn: set[int] = set()
        self._dtypes: dict[str, np.dtype] = {}
        self._watch = _Watch()
        try:
            self._res.ctrl = self._res.new_segment(_CTRL.size)
            _CTRL.pack_into(self._res.ctrl.buf, 0, 0)
            for _ in range(self.n_workers):
                self._result_segs.append(self._res.new_segment(4096))
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
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(w, child, self._res.ctrl.name, self._result_segs[w].name),
            name=f"sparsecoded-worker-{w}",
            daemon=True,
        )
        try:
            proc.start()
        finally:
            child.close()  # else the master never sees EOF when the worker dies
        self._res.procs[w] = proc
        self._res.conns[w] = parent
        self._watch.add(w, parent, proc.sentinel)
        self._backlog[w].clear()

    def _await_ready(self) -> None:
        deadline = time.monotonic() + max(self.timeout, 60.0)
        waiting = set(range(self.n_workers))
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(
                    f"workers {sorted(waiting)} did not start within {max(self.timeout, 60.0)} s"
                )
            for conn in mpc.wait([self._res.conns[w] for w in waiting], min(left, _MAX_WAIT)):
                w = self._res.conns.index(conn)
                try:
                    conn.recv()
                except EOFError:
                    code = self._exit_code(w)
                    raise RuntimeError(
                        f"worker {w} exited during start-up (exit code {code})"
                    ) from None
                waiting.discard(w)

    def _respawn(self, w: int) -> None:
        proc, conn = self._res.procs[w], self._res.conns[w]
        self._watch.remove(w)  # before its fds close and their numbers get reused
        if conn is not None:
            conn.close()
        if proc is not None:
            self._res.stop_process(proc, 0.1)
        self._res.procs[w] = self._res.conns[w] = None
        self._spawn(w)
        for job in self._jobs.values():
            if job.place_msgs[w] is not None:
                self._send(w, job.place_msgs[w])

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
            self._res.conns[w].send_bytes(_dumps(msg))
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

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or the pool closed itself)."""
        return self._closed_reason is not None

    @property
    def pids(self) -> list[int | None]:
        """Process id of each worker (a respawned worker has a new one)."""
        self._check_open()
        return [p.pid if p is not None else None for p in self._res.procs]

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise PoolClosed(f"this LocalPool is closed ({self._closed_reason})")

    def __enter__(self) -> LocalPool:
        self._check_open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._jobs)} jobs"
        return f"LocalPool(n_workers={self.n_workers}, timeout={self.timeout}, {state})"

    # ----------------------------------------------------------------- payloads

    def place(self, job: str, payloads: Sequence[Sequence[Any]]) -> None:
        """Store ``payloads[w]`` (a list of blocks) on worker ``w`` under ``job``.

        Blocks are scipy sparse matrices (kept as CSR; other formats are converted
        once), numpy arrays, or tuples of them (the pair of ``"matmat"``).  A job
        placed again replaces the old payloads.
        """
        self._check_open()
        if isinstance(payloads, (str, bytes)) or not isinstance(payloads, Sequence):
            raise TypeError(
                f"payloads must be a list of n_workers lists, got {type(payloads).__name__}"
            )
        if len(payloads) != self.n_workers:
            raise ValueError(
                f"payloads has {len(payloads)} entries, expected n_workers = {self.n_workers}"
            )
        prepared = []
        for w, blocks in enumerate(payloads):
            if not isinstance(blocks, (list, tuple)):
                raise TypeError(
                    f"payloads[{w}] is a {type(blocks).__name__}, expected a list of blocks"
                )
            arrays: list[np.ndarray] = []
            specs = [_to_spec(b, arrays, f"payloads[{w}][{s}]") for s, b in enumerate(blocks)]
            prepared.append((specs, arrays))
        # Build every segment first: a failure here (EMFILE, ENOSPC, Ctrl-C) frees what
        # was built and leaves the pool as it was, the old job under this key included.
        record = _Job(self._next_job_id, [], [], [], [])
        try:
            for specs, arrays in prepared:
                metas, offset = [], 0
                for arr in arrays:
                    metas.append((offset, arr.dtype.str, arr.shape))
                    offset += _align(arr.nbytes)
                if not specs:
                    record.segments.append(None)
                    record.place_msgs.append(None)
                else:
                    shm = self._res.new_segment(offset)
                    record.segments.append(shm)
                    _fill(shm, metas, arrays)
                    record.place_msgs.append((_M_PLACE, record.id, shm.name, metas, specs))
                record.specs.append(specs)
                record.metas.append(metas)
        except BaseException:
            for shm in record.segments:
                self._res.free_segment(shm)
            raise
        self._next_job_id += 1
        # Then swap the jobs and tell the workers.  A message cut in half (Ctrl-C
        # inside a send) would desynchronise that pipe: as in a round, that closes
        # the pool.  A send to a dead worker just marks it for respawn.
        try:
            self.drop(job)
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
        """Free what ``job`` placed (nothing happens for a job not placed)."""
        self._check_open()
        record = self._jobs.pop(job, None)
        if record is None:
            return
        for w, shm in enumerate(record.segments):
            if shm is not None:
                self._send(w, (_M_DROP, record.id))
                self._res.free_segment(shm)

    # ----------------------------------------------------------------- rounds

    def _check_run(self, job, op, operand, actions, timeout):
        check_round_args(job, self._jobs, op, actions, self.n_workers)
        record = self._jobs[job]
        timeout = self.timeout if timeout is None else check_timeout(timeout)
        x = None
        if op == "matvec":
            if operand is None:
                raise ValueError("op 'matvec' needs an operand, got None")
            x = np.asarray(operand)
            if x.dtype not in _OPERAND_DTYPES:
                raise ValueError(f"operand has dtype {x.dtype}, expected float32 or float64")
            if x.ndim not in (1, 2):
                raise ValueError(
                    f"operand has {x.ndim} dimensions, expected 1 (vector) or 2 (matrix)"
                )
            for w, specs in enumerate(record.specs):
                for s, spec in enumerate(specs):
                    shape = _leaf_shape(spec, record.metas[w])
                    if shape is None or len(shape) != 2:
                        raise ValueError(
                            f"op 'matvec' needs a matrix in payload ({w}, {s}), found a {spec[0]}"
                        )
                    if shape[1] != x.shape[0]:
                        raise ValueError(
                            f"operand has {x.shape[0]} rows, expected {shape[1]} "
                            f"(the columns of payload ({w}, {s}))"
                        )
        else:
            for w, specs in enumerate(record.specs):
                for s, spec in enumerate(specs):
                    if spec[0] != "tuple" or len(spec[1]) != 2:
                        found = (
                            f"a tuple of {len(spec[1])}" if spec[0] == "tuple" else f"a {spec[0]}"
                        )
                        raise ValueError(
                            f"op 'matmat' needs a pair (A_coded, B_coded) in payload ({w}, {s}), "
                            f"found {found}"
                        )
        return record, x, timeout

    def _layout(self, record: _Job, x: np.ndarray) -> list[tuple | None]:
        """Where each worker writes each slot's result: ((offset, room) per slot) per worker."""
        n_cols = 1 if x.ndim == 1 else x.shape[1]
        key = (n_cols, x.dtype.str)
        layout = record.layouts.get(key)
        if layout is None:
            layout = []
            for w, specs in enumerate(record.specs):
                slots, offset = [], 0
                for spec in specs:
                    rows = _leaf_shape(spec, record.metas[w])[0]
                    itemsize = np.result_type(_leaf_dtype(spec, record.metas[w]), x.dtype).itemsize
                    room = _align(rows * n_cols * itemsize)
                    slots.append((offset, room))
                    offset += room
                layout.append((tuple(slots), offset))
            record.layouts[key] = layout
        reserved = []
        for w, (slots, total) in enumerate(layout):
            if total > self._result_segs[w].size:
                old = self._result_segs[w]
                self._result_segs[w] = self._res.new_segment(max(total, 2 * old.size))
                self._send(w, (_M_RESSEG, self._result_segs[w].name))
                self._res.free_segment(old)
            reserved.append(slots)
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

    def _drain(self) -> list[int]:
        """Read what workers sent after earlier rounds were decided; return workers found dead."""
        dead = []
        for w, is_sentinel in self._watch.wait(0.0):
            if w in self._to_respawn:
                continue
            conn = self._res.conns[w]
            try:
                while conn.poll():
                    self._note_done(w, pickle.loads(conn.recv_bytes()))
                if is_sentinel:
                    raise EOFError
            except (EOFError, OSError):
                self._lost(w)
                dead.append(w)
        return dead

    def _lost(self, w: int) -> None:
        """Worker ``w`` is dead (or unusable): stop watching it, respawn it later."""
        self._to_respawn.add(w)
        self._watch.remove(w)

    def _note_done(self, w: int, msg: tuple) -> None:
        """Track which rounds a worker has finished (for the backlog guard)."""
        kind = msg[0]
        if kind in (_W_CANCELLED, _W_ERR) or (kind in (_W_SHM, _W_PIPE) and msg[4]):
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
            still False, or when ``timeout`` (default: the pool's) passes.
        ValueError
            Unknown op or job, an operand that is not a float32/float64 vector or
            matrix of the payloads' column count, ``actions`` of the wrong length.
        """
        self._check_open()
        record, x, timeout = self._check_run(job, op, operand, actions, timeout)
        try:
            return self._run(job, record, op, x, enough, actions, timeout)
        except Exception:
            raise
        except BaseException:
            # Ctrl-C (or exit) mid-round: a pipe may hold half a message; stop everything.
            self._closed_reason = "closed by a KeyboardInterrupt during a round"
            self.close()
            raise

    def _run(self, job, record, op, x, enough, actions, timeout) -> RoundResult:
        conns = self._res.conns
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
        results: dict[SlotKey, Any] = {}
        order: list[SlotKey] = []
        seconds: dict[SlotKey, float] = {}
        arrival: dict[SlotKey, float] = {}
        pending: dict[int, int] = {}  # worker -> results still owed
        skipped: list[int] = []
        dead: list[int] = []
        crashing: list[int] = []
        t0 = time.perf_counter()
        state = _RoundState(tag, job, enough, results, order, seconds, arrival, pending, t0)

        def round_result(elapsed: float) -> RoundResult:
            # the round as it stands: decided, or (for NotEnoughWorkers.partial) given up
            extra["skipped"] = skipped
            extra["arrival"] = arrival
            return RoundResult(
                results=results,
                order=order,
                compute_seconds=seconds,
                cancelled=sorted(set(pending) | set(skipped)),
                dead=sorted(dead),
                seconds=elapsed,
                extra=extra,
            )

        try:
            for w, specs in enumerate(record.specs):
                if not specs:
                    continue
                if len(self._backlog[w]) >= _MAX_BACKLOG:
                    skipped.append(w)
                    continue
                act = actions[w] if actions is not None else None
                delay, crash = (
                    (float(act.delay), bool(act.crash)) if act is not None else (0.0, False)
                )
                msg = (
                    _M_ROUND,
                    tag,
                    record.id,
                    op,
                    xmeta,
                    delay,
                    crash,
                    None if reserved is None else reserved[w],
                )
                if self._send(w, msg):
                    self._backlog[w].append(tag)
                    pending[w] = len(specs)
                    if crash:
                        crashing.append(w)
                else:
                    dead.append(w)
            decided = not pending and enough(results)
            deadline = time.monotonic() + timeout
            while not decided:
                if not pending:
                    raise NotEnoughWorkers(
                        self._short_message(job, tag, results, dead, skipped, order, respawned),
                        dead=dead,
                        answered=_answered(order),
                        partial=round_result(time.perf_counter() - t0),
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    self._finish_crashes(crashing, pending, dead)
                    raise NotEnoughWorkers(
                        f"round {tag} of job {job!r} timed out after {timeout:g} s: "
                        f"{len(_answered(order))} of {self.n_workers} workers answered "
                        f"({len(results)} results); still busy (cancelled): {sorted(pending)}; "
                        f"dead: {sorted(dead) or 'none'}",
                        dead=dead,
                        answered=_answered(order),
                    )
                for w, is_sentinel in self._watch.wait(left):
                    if w in self._to_respawn:
                        continue  # found dead earlier in this batch
                    conn = conns[w]
                    try:
                        if is_sentinel:  # it exited: read what it sent first
                            while conn.poll() and not decided:
                                decided = self._take(w, pickle.loads(conn.recv_bytes()), state)
                            if decided:
                                break
                            raise EOFError
                        # one message per readiness: the next wait returns at once if more
                        if self._take(w, pickle.loads(conn.recv_bytes()), state):
                            decided = True
                            break
                    except (EOFError, OSError):
                        self._lost(w)
                        dead.append(w)
                        pending.pop(w, None)
            # report workers already dead at the decision, without waiting for any
            for w, is_sentinel in self._watch.wait(0.0):
                if is_sentinel and w in pending:
                    self._lost(w)
                    dead.append(w)
                    del pending[w]
            self._finish_crashes(crashing, pending, dead)
            elapsed = time.perf_counter() - t0
        except NotEnoughWorkers:
            self._respawn_quietly()
            raise
        finally:
            _CTRL.pack_into(self._res.ctrl.buf, 0, tag)  # cancel whoever still works on it
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
                self._res.procs[w].kill()
                self._lost(w)
                dead.append(w)
                del pending[w]

    def _take(self, w: int, msg: tuple, st: _RoundState) -> bool:
        """Handle one message of worker ``w``; True when the round is decided."""
        self._note_done(w, msg)
        kind = msg[0]
        if msg[1] != st.tag or kind == _W_READY:
            return False  # stale: an earlier round's, or a respawned worker saying hello
        if kind == _W_SHM or kind == _W_PIPE:
            key = (w, msg[2])
            if kind == _W_SHM:
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
        if kind == _W_ERR:
            self._raise_worker_error(w, st.job, msg)
        if kind == _W_CANCELLED:  # cannot happen before the decision; be safe
            st.pending.pop(w, None)
        return False

    def _short_message(self, job, tag, results, dead, skipped, order, respawned) -> str:
        answered = _answered(order)
        text = (
            f"round {tag} of job {job!r}: enough(results) is still False with every live "
            f"worker done: {len(answered)} of {self.n_workers} workers answered "
            f"({len(results)} results); dead workers: {sorted(dead) or 'none'}"
        )
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
        if proc.exitcode is None:
            proc.join(0.5)  # returns as soon as it is reaped
        return "unknown" if proc.exitcode is None else str(proc.exitcode)

    def _raise_worker_error(self, w: int, job: Any, msg: tuple) -> None:
        _, tag, slot, exc, text = msg
        part = f"payload {slot}" if slot >= 0 else "the round set-up"
        where = f"in LocalPool worker {w}, {part} of job {job!r}, round {tag}"
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


class _Watch:
    """The pipes and sentinels of the live workers, watched with one persistent poll object.

    What :func:`multiprocessing.connection.wait` does, without re-registering
    2 n objects at each call (a round waits once per arrival).
    """

    _READY = select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLNVAL

    def __init__(self) -> None:
        self._poll = select.poll()
        self._owner: dict[int, tuple[int, bool]] = {}  # fd -> (worker, is sentinel)
        self._fds: dict[int, tuple[int, int]] = {}  # worker -> its two fds

    def add(self, w: int, conn: mpc.Connection, sentinel: int) -> None:
        self.remove(w)
        fds = (conn.fileno(), sentinel)
        for fd, is_sentinel in zip(fds, (False, True), strict=True):
            self._poll.register(fd, select.POLLIN)
            self._owner[fd] = (w, is_sentinel)
        self._fds[w] = fds

    def remove(self, w: int) -> None:
        for fd in self._fds.pop(w, ()):
            self._owner.pop(fd, None)
            try:
                self._poll.unregister(fd)
            except KeyError:
                pass

    def wait(self, timeout: float) -> list[tuple[int, bool]]:
        ms = _poll_ms(timeout)
        return [
            self._owner[fd]
            for fd, ev in self._poll.poll(ms)
            if ev & self._READY and fd in self._owner
        ]


def _poll_ms(timeout: float) -> int:
    """``timeout`` seconds as poll()'s int milliseconds; a longer (or infinite) wait is
    cut to ``_MAX_WAIT`` and the callers, which loop until their deadline, wait again."""
    if not timeout < _MAX_WAIT:
        return int(_MAX_WAIT * 1000)
    return max(0, math.ceil(timeout * 1000))


def _answered(order: Sequence[SlotKey]) -> list[int]:
    seen: dict[int, None] = {}
    for w, _ in order:
        seen.setdefault(w, None)
    return list(seen)
