"""What this machine offers an emulated cluster: rights, tools, a cpu controller, processes.

The one error of the package (:class:`EmulationError`), the tools it runs
(:func:`which`, :func:`run`), the check that names everything missing at
once (:func:`requirements_missing`), where the cpu controller is mounted
(:func:`cpu_cgroup_root`), and how a recorded pid is told from a reused one
(:func:`start_time`, :func:`alive`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


class EmulationError(OSError):
    """The cluster cannot be brought up (missing rights or tools), or a step failed."""


def which(name: str, *extra: str) -> str | None:
    """``name`` on the PATH or in the sbin folders (root's tools are often off a user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin", *extra):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``cmd``; with ``check`` a failure is an :class:`EmulationError` naming its last line."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise EmulationError(f"`{' '.join(cmd)}` failed: {msg[-1] if msg else proc.returncode}")
    return proc


def cpu_cgroup_root() -> tuple[str, Path] | None:
    """("v1" | "v2", mount point) of a writable cpu controller, or None."""
    v2 = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue
            fstype, where, opts = parts[2], parts[1], parts[3].split(",")
            if fstype == "cgroup" and "cpu" in opts:
                return "v1", Path(where)
            if fstype == "cgroup2" and v2 is None:
                with contextlib.suppress(OSError):
                    if "cpu" in (Path(where) / "cgroup.controllers").read_text().split():
                        v2 = Path(where)
    return ("v2", v2) if v2 is not None else None


def requirements_missing(link_mbit: Any = None) -> list[str]:
    """What this machine lacks for an :class:`~sparsecoded.emulate.EdgeCluster` (empty: nothing)."""
    missing = []
    if not sys.platform.startswith("linux"):
        return [f"Linux (this is {sys.platform})"]
    if os.geteuid() != 0:
        missing.append("root (network namespaces and cgroups need it; run with sudo)")
    if which("ip") is None:
        missing.append("`ip` (iproute2)")
    if which("sshd") is None:
        missing.append("`sshd` (OpenSSH server, e.g. apt-get install openssh-server)")
    if link_mbit is not None and which("tc") is None:
        missing.append("`tc` (iproute2) for link_mbit")
    if cpu_cgroup_root() is None:
        missing.append("a cpu cgroup controller (cgroup v1 `cpu` or v2 with `cpu` enabled)")
    try:
        import asyncssh  # noqa: F401
    except ImportError:
        missing.append("asyncssh (pip install 'sparsecoded[dask]')")
    return missing


def require(link_mbit: Any = None) -> None:
    """Raise one :class:`EmulationError` naming everything :func:`requirements_missing` finds."""
    missing = requirements_missing(link_mbit)
    if missing:
        raise EmulationError("an emulated edge cluster needs " + ", ".join(missing))


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (to tell a reused pid from ours)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int | None, started: str | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not) and is the process started at ``started``."""
    if not pid:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X") and (started is None or fields[19] == started)
