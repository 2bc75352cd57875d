"""An emulated edge cluster on one Linux machine: real hosts, really slow devices.

:class:`EdgeCluster` brings up ``n`` *hosts*, each a network namespace with its
own address on a private bridge, its own ``sshd`` (key-only root login, host
key pinned in a known_hosts file of the cluster's own) and its own cpu cgroup.
The sshd lives in that cgroup, so everything started over SSH on the host
(the Dask nanny and worker of :meth:`EdgeCluster.pool`, every thread and child
of theirs) inherits it: a quota of 0.1 core caps the whole device at a tenth
of a core, its computation, its (de)serialisation and its event loop alike
(with a 10 ms quota period, so short tasks are slowed too: :mod:`.cgroups`).
Stragglers are then devices that really compute slowly, not sleeps injected
in the worker, and :meth:`EdgeCluster.set_cpu` slows or restores them while a
job runs.

Needs root on Linux, ``ip`` (iproute2), OpenSSH's ``sshd``, a cpu cgroup
controller (v1 ``cpu.cfs_quota_us`` or v2 ``cpu.max``), ``tc`` for
``link_mbit``, and ``asyncssh`` (key generation and the pool's SSH client).
What is missing is named in one :class:`EmulationError`.

Every name carries a tag unique to the cluster (``sc`` + 6 random hex
digits): namespaces ``<tag>-h1..n``, bridge ``<tag>br``, veths ``<tag>v1..n``,
cgroups ``sparsecoded-<tag>-h1..n``, state in ``/run/sparsecoded/emulate/<tag>``
(override with ``SPARSECODED_EMULATE_DIR``).  What is made is written to the
state file *before* it is made, so :func:`down` (``sparsecoded emulate down``)
removes exactly that, after a crash too, and never touches anything else.

Modules: :mod:`.system` (rights, tools, processes, :class:`EmulationError`),
:mod:`.network` (bridge, namespaces, veths, ``tc``), :mod:`.cgroups` (cpu
quotas, v1 and v2, and why the period is 10 ms), :mod:`.sshd` (servers and
keys), :mod:`.state` (the state files, teardown, ``down``, ``list``),
:mod:`.quiet` (Dask's closed-comm noise on close), :mod:`.cluster`
(:class:`EdgeCluster`), :mod:`.commands` (``sparsecoded emulate up|down|list``).

Examples
--------
>>> with EdgeCluster(6, cpu=0.3) as edge:            # doctest: +SKIP
...     pool = edge.pool()
...     edge.set_cpu([1, 4], 0.1)                       # two devices at 10 % of a core
"""

from __future__ import annotations

from .cluster import EdgeCluster
from .commands import add_cli
from .state import down, list_clusters
from .system import EmulationError, requirements_missing

__all__ = [
    "EdgeCluster",
    "EmulationError",
    "add_cli",
    "down",
    "list_clusters",
    "requirements_missing",
]
