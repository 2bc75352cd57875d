"""The cluster object: :class:`EdgeCluster` brings its hosts up, throttles them, closes them.

Bring-up records every name in the state (:mod:`.state`) before it makes the
thing (:mod:`.network`, :mod:`.cgroups`, :mod:`.sshd`).  ``close`` runs on
leaving the ``with`` block whatever the reason, at interpreter exit (every
open cluster is registered), and on SIGTERM (turned into ``SystemExit`` while
a cluster is open in the main thread); a second Ctrl-C during ``close`` is
ignored, so it never leaves half a cluster behind.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from . import network, sshd
from .cgroups import CpuGroups, check_fraction
from .quiet import closing_quietly, quiet_closed_comms
from .state import State, state_root, teardown
from .system import EmulationError, require, start_time

_OPEN: set[EdgeCluster] = set()
_OPEN_LOCK = threading.Lock()


def _close_all_at_exit() -> None:
    for c in list(_OPEN):
        with contextlib.suppress(BaseException):
            c.close()


atexit.register(_close_all_at_exit)


def _sigterm_to_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class EdgeCluster:
    """``n_hosts`` emulated edge devices: network namespaces with an sshd and a cpu quota each.

    Parameters
    ----------
    n_hosts : int
        Number of hosts (1..200).
    cpu : float or sequence of float, optional
        Fraction of one core per host (one value for all, or one per host);
        default 1.0.  The quota caps every process started on the host.
    link_mbit : float or sequence of float, optional
        Rate limit of each host's link, both directions (``tc tbf``).
    python : str, optional
        Interpreter the hosts run for their workers (default: this one).

    Use it as a context manager (or call :meth:`start` and :meth:`close`).
    ``close`` removes every namespace, link, cgroup, sshd and worker the
    cluster made; it runs on leaving the ``with`` block whatever the reason
    (an exception, Ctrl-C), at interpreter exit, and on SIGTERM.
    """

    def __init__(
        self,
        n_hosts: int,
        cpu: float | Sequence[float] | None = None,
        link_mbit: float | Sequence[float] | None = None,
        *,
        python: str | None = None,
    ):
        if isinstance(n_hosts, bool) or not isinstance(n_hosts, int) or not 1 <= n_hosts <= 200:
            raise ValueError(f"n_hosts must be an integer from 1 to 200, got {n_hosts!r}")
        self.n_hosts = n_hosts
        self.cpu = self._per_host(1.0 if cpu is None else cpu, "cpu", check_fraction)
        self.link_mbit = (
            None if link_mbit is None else self._per_host(link_mbit, "link_mbit", check_fraction)
        )
        self.python = python or sys.executable
        self.tag = "sc" + "".join(
            random.SystemRandom().choice("0123456789abcdef") for _ in range(6)
        )
        self.hosts: list[str] = []
        self.gateway: str | None = None
        self._state: State | None = None
        self._groups: CpuGroups | None = None
        self._procs: list[subprocess.Popen] = []
        self._pools: list[Any] = []
        self._started = False
        self._closed = False
        self._old_sigterm: Any = None
        self._detached = False

    def _per_host(self, value: Any, what: str, check: Callable[[Any, str], float]) -> list[float]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return [check(value, what)] * self.n_hosts
        values = list(value)
        if len(values) != self.n_hosts:
            raise ValueError(
                f"{what} has {len(values)} entries, expected one per host ({self.n_hosts})"
            )
        return [check(v, what) for v in values]

    # -- names
    def netns(self, i: int) -> str:
        """Name of host ``i``'s network namespace (0-based index)."""
        return f"{self.tag}-h{i + 1}"

    def cgroup(self, i: int) -> Path:
        """Path of host ``i``'s cpu cgroup."""
        assert self._groups is not None
        return self._groups.path(self._cgroup_name(i))

    def _cgroup_name(self, i: int) -> str:
        return f"sparsecoded-{self.tag}-h{i + 1}"

    @property
    def state_dir(self) -> Path:
        return state_root() / self.tag

    @property
    def connect_options(self) -> dict[str, Any]:
        """Keywords for ``asyncssh.connect`` (and :func:`sparsecoded.ssh_pool`)."""
        return sshd.connect_options(self.state_dir)

    # -- life cycle
    def __enter__(self) -> EdgeCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, *, detach: bool = False) -> EdgeCluster:
        """Bring the hosts up (``detach``: leave them running after this process ends)."""
        if self._started:
            raise EmulationError("this EdgeCluster was already started")
        require(self.link_mbit)
        self._started = True
        self._detached = detach
        with _OPEN_LOCK:
            _OPEN.add(self)
        if not detach and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError):
                if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                    self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)
        try:
            self._bring_up()
        except BaseException:
            self.close()
            raise
        return self

    def _bring_up(self) -> None:
        root = state_root()
        root.mkdir(parents=True, exist_ok=True)
        self._groups = CpuGroups()
        with open(root / ".lock", "a+") as lock:  # one subnet pick at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.state_dir.mkdir(mode=0o700)
            owner = (
                None if self._detached else {"pid": os.getpid(), "started": start_time(os.getpid())}
            )
            self._state = State(
                self.state_dir,
                {"tag": self.tag, "owner": owner, "n_hosts": self.n_hosts, "created": time.time()},
            )
            self._state.save()
            net = network.pick_subnet(random.Random())
            addrs = list(net.hosts())
            self.gateway = str(addrs[0])
            self.hosts = [str(addrs[i + 1]) for i in range(self.n_hosts)]
            self._state.data.update(
                {"subnet": str(net), "gateway": self.gateway, "hosts": self.hosts}
            )
            bridge = f"{self.tag}br"
            self._state.add("bridges", bridge)
            network.add_bridge(bridge, self.gateway)
        sshd.write_keys(self.state_dir, self.hosts, self.tag)
        for i, addr in enumerate(self.hosts):
            self._bring_up_host(i, addr, bridge)
        for i, addr in enumerate(self.hosts):
            sshd.wait_listening(self._procs[i], i, addr, sshd.log_path(self.state_dir, i))

    def _bring_up_host(self, i: int, addr: str, bridge: str) -> None:
        assert self._state is not None
        assert self._groups is not None
        ns, veth = self.netns(i), f"{self.tag}v{i + 1}"
        group = self._cgroup_name(i)
        # names are recorded before they are made, so that teardown removes them: a name
        # that already exists is someone else's, and must never be recorded (nor removed)
        if Path("/run/netns", ns).exists() or self._groups.path(group).exists():
            raise EmulationError(
                f"network namespace {ns} or cpu cgroup {group} already exists: not ours"
            )
        self._state.add("netns", ns)
        network.add_netns(ns)
        self._state.add("veths", veth)
        rate = None if self.link_mbit is None else self.link_mbit[i]
        network.add_host_link(ns, veth, bridge, addr, rate)
        self._state.add("cgroups", group)
        self._groups.create(group)
        self._groups.set(group, self.cpu[i])
        cfg = sshd.write_config(self.state_dir, i, addr)
        proc = sshd.start(ns, cfg, sshd.log_path(self.state_dir, i))
        self._procs.append(proc)
        # into the cgroup before any login, so every session and worker inherits it
        self._state.add("sshd", {"pid": proc.pid, "started": start_time(proc.pid), "host": i})
        self._groups.add(group, proc.pid)

    def set_cpu(self, host_indices: int | Iterable[int], fraction: float) -> None:
        """Cap the given hosts (0-based) at ``fraction`` of a core, now (also mid-round)."""
        if self._groups is None or self._closed:
            raise EmulationError("the cluster is not running")
        f = check_fraction(fraction, "fraction")
        idx = [host_indices] if isinstance(host_indices, int) else list(host_indices)
        for i in idx:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_hosts:
                raise ValueError(f"host index must be in 0..{self.n_hosts - 1}, got {i!r}")
        for i in idx:
            self._groups.set(self._cgroup_name(i), f)
            self.cpu[i] = f

    def pool(self, workers_per_host: int = 1, **kwargs: Any) -> Any:
        """An :func:`sparsecoded.ssh_pool` with a worker per host (pool worker ``i`` on host ``i``).

        The workers are started over SSH inside their host, so they run in its
        cgroup.  ``kwargs`` go to ``ssh_pool`` (``timeout``, ``worker_options``...).
        The cluster closes the pool on :meth:`close` if it is still open.
        """
        if not self.hosts or self._closed:
            raise EmulationError("the cluster is not running")
        from sparsecoded import ssh_pool

        hosts = [h for h in self.hosts for _ in range(workers_per_host)]
        kwargs.setdefault("python", self.python)
        kwargs.setdefault("scheduler_host", self.gateway)
        p = ssh_pool(hosts, connect_options=self.connect_options, **kwargs)
        self._pools.append(p)
        quiet_closed_comms(p)
        return p

    def close(self) -> None:
        """Stop the pools, workers and sshds; remove the namespaces, links, cgroups and state."""
        if self._closed:
            return
        self._closed = True
        main = threading.current_thread() is threading.main_thread()
        old_int = old_term = None
        if main:  # a second Ctrl-C or SIGTERM must not leave half a cluster behind
            with contextlib.suppress(ValueError):
                old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
                old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            with closing_quietly():
                for p in reversed(self._pools):
                    with contextlib.suppress(Exception):
                        p.close()
            self._pools.clear()
            problems = []
            if self._state is not None:
                problems = teardown(self._state)
            for proc in self._procs:
                with contextlib.suppress(Exception):
                    proc.wait(timeout=2)
            self._procs.clear()
            if problems:
                raise EmulationError("could not remove " + "; ".join(problems))
        finally:
            with _OPEN_LOCK:
                _OPEN.discard(self)
            if main:
                with contextlib.suppress(ValueError, TypeError):
                    if old_int is not None:
                        signal.signal(signal.SIGINT, old_int)
                    # ours (installed at start) gives way to what was there before it
                    restore = self._old_sigterm if self._old_sigterm is not None else old_term
                    if restore is not None:
                        signal.signal(signal.SIGTERM, restore)

    def detach(self) -> None:
        """Leave the cluster running after this process (``sparsecoded emulate down`` ends it)."""
        with _OPEN_LOCK:
            _OPEN.discard(self)
        self._closed = True

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self.hosts else "not started")
        return f"EdgeCluster({self.n_hosts}, tag={self.tag!r}, hosts={self.hosts}, {state})"
