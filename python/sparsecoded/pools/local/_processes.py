"""The master's hold on LocalPool's worker processes and segments.

:class:`Resources` is everything that must be released (processes, sockets,
segments): the pool's finalizer holds it, never the pool, so that it runs
when the pool is collected or the interpreter exits.  :func:`start_worker`
starts one worker process; :class:`Watch` waits on the workers' sockets.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import time
from multiprocessing import connection as mpc
from multiprocessing import shared_memory as mpshm

from . import _protocol as P

MAX_WAIT = 3600.0  # seconds: the longest single wait (a longer timeout waits again)


def _package_root() -> str:
    """The directory that holds the ``sparsecoded`` package this master runs."""
    import sparsecoded

    return os.path.dirname(os.path.dirname(os.path.abspath(sparsecoded.__file__)))


def start_worker(
    w: int, ctrl: str, res: str, threads: int
) -> tuple[subprocess.Popen, mpc.Connection]:
    """Start worker ``w``: a fresh interpreter running :mod:`._worker`, and its socket.

    Not multiprocessing's ``spawn`` (nor ``forkserver``): both re-import the
    user's ``__main__`` in the child, which re-runs a script that has no
    ``if __name__ == "__main__":`` guard.  The socket is inherited
    (``pass_fds``): no address, no authentication key, nothing to clean up.
    """
    parent, child = socket.socketpair()
    try:
        args = [_package_root(), str(child.fileno()), str(w), ctrl, res, str(threads)]
        proc = subprocess.Popen(
            [sys.executable, "-c", P.BOOT, *args],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            # its own session: Ctrl-C in a terminal reaches the master alone,
            # which decides what stops (the worker also ignores SIGINT)
            start_new_session=True,
        )
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()  # else the master never sees EOF when the worker dies
    return proc, mpc.Connection(parent.detach())


class Resources:
    """Everything that must be released; the finalizer holds this, never the pool."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.procs: list[subprocess.Popen | None] = []
        self.conns: list[mpc.Connection | None] = []
        self.segments: dict[str, mpshm.SharedMemory] = {}
        self.ctrl: mpshm.SharedMemory | None = None

    def conn(self, w: int) -> mpc.Connection:
        """Worker ``w``'s socket; a RuntimeError between its death and its respawn, or after
        shutdown."""
        conn = self.conns[w] if w < len(self.conns) else None
        if conn is None:
            raise RuntimeError(f"LocalPool worker {w} has no socket (closed, or not respawned)")
        return conn

    def proc(self, w: int) -> subprocess.Popen:
        """Worker ``w``'s process; a RuntimeError when it has none (as :meth:`conn`)."""
        proc = self.procs[w] if w < len(self.procs) else None
        if proc is None:
            raise RuntimeError(f"LocalPool worker {w} has no process (closed, or not respawned)")
        return proc

    def control(self) -> mpshm.SharedMemory:
        """The segment of the cancel counter; a RuntimeError after shutdown."""
        if self.ctrl is None:
            raise RuntimeError("LocalPool is shut down: its control segment is gone")
        return self.ctrl

    def new_segment(self, size: int) -> mpshm.SharedMemory:
        shm = mpshm.SharedMemory(name=P.segment_name(), create=True, size=max(int(size), 1))
        self.segments[shm.name] = shm
        P.close_fd(shm)
        return shm

    def free_segment(self, shm: mpshm.SharedMemory | None) -> None:
        if shm is None:
            return
        self.segments.pop(shm.name, None)
        P.close_quietly(shm)
        try:
            shm.unlink()
        except FileNotFoundError:
            pass

    def stop_process(self, proc: subprocess.Popen, grace: float) -> None:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                pass

    def shutdown(self) -> None:
        """Unlink every segment, then stop every worker.  Idempotent, and safe to call
        again after an interruption (a second Ctrl-C during the join): it finishes."""
        if os.getpid() != self.owner:  # a forked copy of the master must not stop our workers
            return
        if self.ctrl is not None:
            P.CTRL.pack_into(P.mapped(self.ctrl), 0, P.CANCEL_ALL)
        # Segments first: unlinking is instant, and the workers keep their mappings.
        for shm in list(self.segments.values()):
            self.free_segment(shm)
        self.ctrl = None
        try:
            for i, conn in enumerate(self.conns):
                if conn is not None:
                    try:
                        conn.send_bytes(P.dumps((P.M_STOP,)))
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
                    except OSError:
                        pass
        self.procs.clear()
        self.conns.clear()


class Watch:
    """The sockets of the live workers, in one persistent selector.

    What :func:`multiprocessing.connection.wait` does, without registering
    ``n`` objects anew at each call (a round waits once per arrival).
    """

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._fds: dict[int, int] = {}  # worker -> its fd

    def add(self, w: int, conn: mpc.Connection) -> None:
        self.remove(w)
        self._fds[w] = conn.fileno()
        self._sel.register(conn.fileno(), selectors.EVENT_READ, w)

    def remove(self, w: int) -> None:
        fd = self._fds.pop(w, None)
        if fd is not None:
            try:
                self._sel.unregister(fd)
            except (KeyError, ValueError):
                pass

    def wait(self, timeout: float) -> list[int]:
        """Workers whose socket is readable (a message, or EOF: the worker is gone)."""
        if not self._fds:  # some selectors refuse to wait on nothing
            if timeout > 0:
                time.sleep(min(timeout, MAX_WAIT))
            return []
        # a longer (or infinite) wait is cut: the callers loop until their deadline
        return [key.data for key, _ in self._sel.select(max(min(timeout, MAX_WAIT), 0.0))]

    def close(self) -> None:
        self._sel.close()
