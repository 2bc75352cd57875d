"""Start a Dask cluster over SSH and pool it: :func:`ssh_pool`.

The scheduler runs in this process; one named Dask worker (under a nanny)
starts on every host entry through Dask's SSH process classes, so each entry
gets a stable worker name and becomes pool worker ``i``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import distributed

from ..base import check_threads
from .pool import DaskPool

__all__ = ["ssh_pool"]


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
    threads_per_worker: int = 1,
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
    threads_per_worker : int
        OpenMP threads of each kernel call on a worker (>= 1; see :class:`DaskPool`).
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

    if isinstance(hosts, (str, bytes)):
        raise ValueError(
            f"hosts must be a sequence of host names (one per worker), got a "
            f"{type(hosts).__name__} {hosts!r}; write [{hosts!r}] for one worker"
        )
    threads_per_worker = check_threads(threads_per_worker)  # before anything starts
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
    # The cluster starts its workers while it is being built: keep hold of it
    # from the start, so that an interrupt (Ctrl-C) then still stops them.
    started: list[Any] = []

    class _Cluster(SpecCluster):
        def __init__(self, *args: Any, **kw: Any) -> None:
            started.append(self)
            super().__init__(*args, **kw)

    client = None
    try:
        cluster = _Cluster(workers, scheduler, name="sparsecoded-ssh")
        client = distributed.Client(cluster)
        client.wait_for_workers(n, timeout=startup_timeout)
        return DaskPool(
            client,
            workers=list(range(n)),
            threads_per_worker=threads_per_worker,
            _owned=[cluster, client],
            **kwargs,
        )
    except BaseException:
        # the first error is the one to see: a failing close must neither hide
        # it nor keep the SSH workers running
        try:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        finally:
            for c in started:
                with contextlib.suppress(Exception):
                    c.close()
        raise
