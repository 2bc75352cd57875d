"""What LocalPool's master and its worker processes agree on.

The messages (short tuples, pickled; the kinds are one letter), the shared
segments (names, mapping without the resource tracker, the cancel counter) and
the payload *specs*: a placed payload described as a nested tuple of array
indices, so that the arrays travel once through one shared segment and the
worker rebuilds the payload as views on it.

Master -> worker: ``(_M_ROUND, tag, job_id, op, operand_meta, delay, crash,
reserved)``, ``(_M_PLACE, job_id, segment, metas, specs)``, ``(_M_DROP,
job_id)``, ``(_M_RESSEG, segment)`` (the worker's result area moved),
``(_M_STOP,)``.  Worker -> master: ``(_W_READY, pid)``, ``(_W_SHM, tag, slot,
seconds, last, shape, dtype, offset)`` (a result in the result area),
``(_W_PIPE, tag, slot, seconds, last, value)``, ``(_W_CANCELLED, tag)``,
``(_W_ERR, tag, slot, exception, traceback text)``.
"""

from __future__ import annotations

import os
import pickle
import secrets
import struct
import sys
from collections.abc import Sequence
from multiprocessing import shared_memory as mpshm
from typing import Any

import numpy as np

from ..._validation import CSR

#: every shared-memory segment of a pool is named ``SHM_PREFIX + "<master pid>_<random>"``
SHM_PREFIX = "spcd_"

ALIGN = 64  # every array in a segment starts on a cache line
CTRL = struct.Struct("q")  # the cancel counter: tag of the last decided round
CANCEL_ALL = 1 << 62  # counter value that cancels every round, at close

# how the master starts a worker: ``python -c BOOT <package root> <fd> <index> <ctrl>
# <result area> <threads>``; the package's root goes first on sys.path (in place of the
# current directory), so that the worker imports this very tree and nothing of the user's
BOOT = (
    "import sys; sys.path[0] = sys.argv.pop(1); "
    "from sparsecoded.pools.local._worker import main; main(sys.argv[1:])"
)

# message kinds (short: they are pickled every round)
M_ROUND, M_PLACE, M_DROP, M_RESSEG, M_STOP = "r", "p", "d", "s", "x"
W_READY, W_SHM, W_PIPE, W_CANCELLED, W_ERR = "R", "S", "P", "C", "E"


def dumps(msg: tuple) -> bytes:
    # plain pickle: Connection.send's ForkingPickler costs ~10 us more a message, and
    # nothing sent here needs its reducers (no connections or fds travel)
    return pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)


def align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def segment_name() -> str:
    # short enough for macOS (31 characters); the pid tells whose segment it is
    return f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(5)}"


def attach(name: str) -> mpshm.SharedMemory:
    """Map an existing segment without registering it with the resource tracker.

    Only the master registers (and unlinks) segments: a worker's registration
    would start a tracker of its own that unlinks, or warns about, a segment
    the master still owns when the worker exits.
    """
    if sys.version_info >= (3, 13):
        return close_fd(mpshm.SharedMemory(name=name, track=False))
    from multiprocessing import resource_tracker

    # Only ever called in a worker process, from its single thread.
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return close_fd(mpshm.SharedMemory(name=name))
    finally:
        resource_tracker.register = register


def close_fd(shm: mpshm.SharedMemory) -> mpshm.SharedMemory:
    """Close the descriptor SharedMemory keeps besides its mapping (mmap holds its own).

    A segment then costs one descriptor, not two; nothing reads ``_fd`` again but
    ``close()``, which skips it when it is -1.
    """
    fd = getattr(shm, "_fd", -1)
    if fd >= 0:
        os.close(fd)
        shm._fd = -1  # type: ignore[attr-defined]  # private, absent from the typeshed stub
    return shm


def mapped(shm: mpshm.SharedMemory) -> memoryview:
    """The mapping of ``shm`` (its ``buf``, which is None once it is closed)."""
    buf = shm.buf
    if buf is None:
        raise ValueError(f"shared memory segment {shm.name} is closed")
    return buf


def close_quietly(shm: mpshm.SharedMemory | None) -> None:
    if shm is None:
        return
    try:
        shm.close()
    except BufferError:
        # A view is still alive somewhere (a traceback); the mapping goes with the process.
        pass


# --------------------------------------------------------------------------- payload specs


def to_spec(obj: Any, arrays: list[np.ndarray], seen: dict[int, int] | None = None) -> tuple:
    """Describe a placed payload (see ``kernels._placed``) as a spec; its arrays are
    appended to ``arrays``.

    ``seen`` (array id -> index in ``arrays``), shared by the payloads of one
    worker, stores an array used by several payloads once: a device of a
    finer-partition MM code multiplies each of its coded A-slots with each of
    its B-slots, so its pairs share factors.
    """

    def add(arr: np.ndarray) -> int:
        if seen is not None and id(arr) in seen:
            return seen[id(arr)]
        arrays.append(arr)
        if seen is not None:
            seen[id(arr)] = len(arrays) - 1
        return len(arrays) - 1

    if isinstance(obj, CSR):
        parts = tuple(add(arr) for arr in (obj.data, obj.indices, obj.indptr))
        return ("csr", obj.shape, parts)
    if isinstance(obj, np.ndarray):
        return ("dense", add(np.ascontiguousarray(obj)))
    return ("pair", to_spec(obj[0], arrays, seen), to_spec(obj[1], arrays, seen))


def from_spec(spec: tuple, views: list[np.ndarray]) -> Any:
    kind = spec[0]
    if kind == "csr":
        data, indices, indptr = (views[i] for i in spec[2])
        return CSR(spec[1], indptr, indices, data)
    if kind == "dense":
        return views[spec[1]]
    return (from_spec(spec[1], views), from_spec(spec[2], views))


def layout(arrays: Sequence[np.ndarray]) -> tuple[list[tuple], int]:
    """(offset, dtype, shape) of each array in one segment, and the segment's size."""
    metas, offset = [], 0
    for arr in arrays:
        metas.append((offset, arr.dtype.str, arr.shape))
        offset += align(arr.nbytes)
    return metas, offset


def fill(shm: mpshm.SharedMemory, metas: Sequence[tuple], arrays: Sequence[np.ndarray]) -> None:
    for view, arr in zip(views(shm, metas, writeable=True), arrays, strict=True):
        view[...] = arr


def views(
    shm: mpshm.SharedMemory, metas: Sequence[tuple], *, writeable: bool = False
) -> list[np.ndarray]:
    out = []
    for off, dt, shape in metas:
        v = np.ndarray(shape, dtype=np.dtype(dt), buffer=shm.buf, offset=off)
        v.flags.writeable = writeable  # a worker never writes its payloads
        out.append(v)
    return out
