"""The program of one LocalPool worker process.

Started by the master as ``python -c BOOT <root> <fd> <index> <ctrl> <result area>
<threads>`` (see ``pool.py``): a fresh interpreter that imports ``sparsecoded``
and nothing of the user's program, talking to the master over the socket
``<fd>`` it inherited.  It maps the placed payloads once, computes its slots
of each round into its result area, and polls the cancel counter between
them.

It exits quietly when the master goes (socket EOF, or a new parent), and when
the master is shutting down: a segment that vanished while the counter says
"cancel everything" is the master cleaning up, not an error.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
import traceback
from multiprocessing import connection as mpc
from multiprocessing import shared_memory as mpshm
from typing import Any

import numpy as np

from ..base import compute_placed
from . import _protocol as P

_SLICE = 0.005  # seconds: how often an injected delay looks at the cancel counter


class _MasterGone(BaseException):
    """The master died: the worker leaves (a BaseException, so no handler reports it)."""


class _Worker:
    """State and loop of one worker process."""

    def __init__(self, index: int, conn: mpc.Connection, ctrl: str, res: str, threads: int):
        self.index = index
        self.conn = conn
        self.threads = threads
        self.ppid = os.getppid()
        self.ctrl = P.attach(ctrl)
        self.res: mpshm.SharedMemory | None
        try:
            self.res = P.attach(res)
        except FileNotFoundError:
            # a respawned worker: the master grew (and freed) this segment before we
            # mapped it; the resize message that names the new one is in the socket.
            # Until it is read, results go through the socket.
            self.res = None
        self.op: mpshm.SharedMemory | None = None
        # job id -> (segment, payload list) or (None, reason it could not be placed)
        self.jobs: dict[int, tuple[mpshm.SharedMemory | None, Any]] = {}

    def cancelled(self, tag: int) -> bool:
        return P.CTRL.unpack_from(P.mapped(self.ctrl), 0)[0] >= tag

    def closing(self) -> bool:
        """True once the master has begun to shut the pool down."""
        return P.CTRL.unpack_from(P.mapped(self.ctrl), 0)[0] >= P.CANCEL_ALL

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
        self.send((P.W_READY, os.getpid()))
        while True:
            try:
                msg = self.conn.recv_bytes()
            except (EOFError, OSError):
                return  # the master is gone
            msg = pickle.loads(msg)
            kind = msg[0]
            if kind == P.M_ROUND:
                self.round(*msg[1:])
            elif kind == P.M_PLACE:
                self.place(*msg[1:])
            elif kind == P.M_DROP:
                self.drop(msg[1])
            elif kind == P.M_RESSEG:
                P.close_quietly(self.res)
                try:
                    self.res = P.attach(msg[1])
                except FileNotFoundError:
                    # already replaced again while this worker was busy: a newer
                    # message follows; until then results go through the socket
                    self.res = None
            elif kind == P.M_STOP:
                return

    def place(self, job: int, name: str, metas: list[tuple], specs: list[tuple]) -> None:
        self.drop(job)
        try:
            shm = P.attach(name)
        except FileNotFoundError:
            # dropped by the master before this message was read: a drop message follows
            self.jobs[job] = (None, f"segment {name} was gone when worker {self.index} mapped it")
            return
        try:
            views = P.views(shm, metas)
            self.jobs[job] = (shm, [P.from_spec(s, views) for s in specs])
        except Exception as exc:  # reported by the first round of this job
            views = None
            P.close_quietly(shm)
            self.jobs[job] = (None, f"worker {self.index} could not rebuild its payloads: {exc!r}")

    def drop(self, job: int) -> None:
        entry = self.jobs.pop(job, None)
        if entry is not None:
            shm, payloads = entry
            del payloads, entry
            P.close_quietly(shm)

    def operand(self, meta: tuple | None) -> np.ndarray | None:
        if meta is None:
            return None
        name, shape, dtype = meta
        if self.op is None or self.op.name.lstrip("/") != name:
            P.close_quietly(self.op)
            self.op = None
            self.op = P.attach(name)
        x = np.ndarray(shape, dtype=np.dtype(dtype), buffer=self.op.buf)
        x.flags.writeable = False
        return x

    def send(self, msg: tuple) -> None:
        self.conn.send_bytes(P.dumps(msg))

    def round(self, tag, job, op, xmeta, delay, crash, reserved) -> None:
        try:
            self._round(tag, job, op, xmeta, delay, crash, reserved)
        except Exception as exc:  # a worker reports its failures, it does not die of them
            self.send_error(tag, -1, exc)

    def _round(self, tag, job, op, xmeta, delay, crash, reserved) -> None:
        send = self.send
        if self.cancelled(tag) or (delay > 0 and not self.sleep(delay, tag)):
            send((P.W_CANCELLED, tag))
            return
        if crash:
            os.kill(os.getpid(), signal.SIGKILL)
        # the master names the job (it alone knows it) in a note on this error
        shm, payloads = self.jobs.get(job, (None, f"the job is not placed on worker {self.index}"))
        if shm is None:
            send((P.W_ERR, tag, -1, RuntimeError(payloads), ""))
            return
        try:
            x = self.operand(xmeta)
        except FileNotFoundError:
            if self.cancelled(tag):  # the master moved on and freed the old operand
                send((P.W_CANCELLED, tag))
                return
            raise
        last = len(payloads) - 1
        for slot, payload in enumerate(payloads):
            if self.cancelled(tag):
                send((P.W_CANCELLED, tag))
                return
            t0 = time.perf_counter()
            try:
                out = compute_placed(op, payload, x, self.threads)
            except Exception as exc:  # sent to the master, which raises it
                self.send_error(tag, slot, exc)
                return
            seconds = time.perf_counter() - t0
            if self.cancelled(tag):
                send((P.W_CANCELLED, tag))
                return
            if reserved is not None and self.res is not None and type(out) is np.ndarray:
                offset, room = reserved[slot]
                if out.nbytes <= room and offset + out.nbytes <= self.res.size:
                    np.ndarray(out.shape, out.dtype, buffer=self.res.buf, offset=offset)[...] = out
                    send(
                        (
                            P.W_SHM,
                            tag,
                            slot,
                            seconds,
                            slot == last,
                            out.shape,
                            out.dtype.str,
                            offset,
                        )
                    )
                    continue
            send((P.W_PIPE, tag, slot, seconds, slot == last, out))

    def send_error(self, tag: int, slot: int, exc: Exception) -> None:
        text = traceback.format_exc()
        try:
            self.send((P.W_ERR, tag, slot, exc, text))
        except Exception:  # the exception does not pickle: send its text
            self.send((P.W_ERR, tag, slot, RuntimeError(repr(exc)), text))

    def release(self) -> None:
        for job in list(self.jobs):
            self.drop(job)
        for shm in (self.op, self.res, self.ctrl):
            P.close_quietly(shm)
        self.conn.close()


def main(argv: list[str]) -> None:
    """Entry point of the worker process: ``argv = [fd, index, ctrl, res, threads]``."""
    # Ctrl-C reaches the whole process group: the master alone decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ... import kernels  # noqa: F401  (import the compute path before saying ready)

    fd, index, ctrl, res, threads = argv
    conn = mpc.Connection(int(fd))
    code = 0
    worker = None
    try:
        worker = _Worker(int(index), conn, ctrl, res, int(threads))
        worker.loop()
    except (_MasterGone, BrokenPipeError, ConnectionResetError, EOFError):
        pass
    except FileNotFoundError:
        # a segment vanished: the master unlinked everything because it is closing
        # (a worker respawned just before close() never even maps the counter)
        if worker is not None and not worker.closing():
            traceback.print_exc()
            code = 1
    except BaseException:
        if worker is None or not worker.closing():
            traceback.print_exc()
            code = 1
    finally:
        if worker is not None:
            worker.release()
        else:
            conn.close()
    # Everything the worker held is released above; skipping the interpreter's
    # teardown (numpy, scipy) makes close() several times faster on a busy machine.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
