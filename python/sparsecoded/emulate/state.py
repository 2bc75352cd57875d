"""What a cluster made, on disk before it is made, and its removal: teardown, list, down.

Each cluster has a folder ``<state root>/<tag>`` (the root is
``/run/sparsecoded/emulate``, or ``SPARSECODED_EMULATE_DIR``) holding its
keys, sshd configs and logs, and ``state.json``: its owner process (``None``
for ``sparsecoded emulate up``), hosts, and every namespace, link, cgroup and
sshd it made, each recorded *before* it is made.  :func:`teardown` removes
exactly what that file lists, so :func:`down` also cleans up after a crash
and never touches anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from . import network
from .cgroups import CpuGroups
from .system import EmulationError, alive

#: where clusters keep their state, keys and sshd configs
DEFAULT_STATE_DIR = "/run/sparsecoded/emulate"


def state_root() -> Path:
    return Path(os.environ.get("SPARSECODED_EMULATE_DIR", DEFAULT_STATE_DIR))


class State:
    """``state.json`` of one cluster: saved whole (atomically) after every change."""

    def __init__(self, directory: Path, data: dict[str, Any]):
        self.dir = directory
        self.data = data

    @property
    def file(self) -> Path:
        return self.dir / "state.json"

    def save(self) -> None:
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.file)

    def add(self, key: str, value: Any) -> None:
        """Record ``value`` under ``key`` (a list) and save, before the thing is made."""
        self.data.setdefault(key, [])
        if value not in self.data[key]:
            self.data[key].append(value)
        self.save()

    @classmethod
    def load(cls, directory: Path) -> State | None:
        try:
            return cls(directory, json.loads((directory / "state.json").read_text()))
        except (OSError, ValueError):
            return None


def _stop_sshd(entry: dict[str, Any]) -> None:
    """Wait up to 3 s for a SIGTERMed sshd (reaping it if it is our child), then SIGKILL it."""
    pid, started = entry.get("pid"), entry.get("started")
    if not isinstance(pid, int):
        return
    deadline = time.monotonic() + 3
    while alive(pid, started) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    if alive(pid, started):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)


def teardown(state: State, quiet: bool = True) -> list[str]:
    """Remove everything ``state`` lists; returns what could not be removed."""
    d = state.data
    problems: list[str] = []
    # 1. processes: the sshds (checked to still be ours), then all in the namespaces and cgroups
    for entry in d.get("sshd", []):
        if alive(entry.get("pid"), entry.get("started")):
            with contextlib.suppress(OSError):
                os.kill(entry["pid"], signal.SIGTERM)
    groups = None
    with contextlib.suppress(EmulationError):
        groups = CpuGroups()
    inside = {pid for ns in d.get("netns", []) for pid in network.netns_pids(ns)}
    if groups is not None:
        for name in d.get("cgroups", []):
            with contextlib.suppress(OSError):
                inside.update(groups.pids(name))
    # the workers' POSIX semaphores (/dev/shm/sem.mp-*, multiprocessing's) outlive a killed
    # process: note what the cluster's processes map, and unlink what is left at the end
    shm = _shm_files(inside)
    for pid in inside:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for name in d.get("cgroups", []):
        if groups is not None:
            try:
                groups.remove(name)
            except OSError as exc:
                problems.append(f"cgroup {name}: {exc}")
    for entry in d.get("sshd", []):
        _stop_sshd(entry)
    for path in shm:
        with contextlib.suppress(OSError):
            os.unlink(path)
    # 2. network: namespaces (their veth ends go with them), veths, the bridge
    problems += network.remove_netns(d.get("netns", []))
    problems += network.remove_links([*d.get("veths", []), *d.get("bridges", [])])
    # 3. the state itself (keys, configs, logs)
    if not problems:
        shutil.rmtree(state.dir, ignore_errors=True)
    elif not quiet:
        print("sparsecoded emulate: could not remove " + "; ".join(problems), file=sys.stderr)
    return problems


def _shm_files(pids: set[int]) -> set[str]:
    """The /dev/shm files the processes ``pids`` have mapped (semaphores, shared memory)."""
    files: set[str] = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as maps:
                for line in maps:
                    parts = line.split(None, 5)
                    if len(parts) == 6 and parts[5].startswith("/dev/shm/"):
                        files.add(parts[5].strip().removesuffix(" (deleted)"))
        except OSError:
            continue
    return files


def list_clusters() -> list[dict[str, Any]]:
    """The clusters in the state folder: tag, hosts, owner pid (None: started by ``up``), alive."""
    root = state_root()
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for child in sorted(root.iterdir()):
        st = State.load(child) if child.is_dir() else None
        if st is None:
            continue
        owner: dict[str, Any] | None = st.data.get("owner")
        out.append(
            {
                "tag": st.data.get("tag", child.name),
                "hosts": st.data.get("hosts", []),
                "owner": owner,
                "owner_alive": owner is not None and alive(owner["pid"], owner["started"]),
                "dir": str(child),
            }
        )
    return out


def down(tag: str | None = None, *, stale_only: bool = False) -> list[str]:
    """Remove clusters made by :class:`~sparsecoded.emulate.EdgeCluster` or ``emulate up``.

    ``tag``: that cluster only.  Otherwise every cluster started by ``up``
    and every one whose owner process is gone (killed without cleaning up);
    ``stale_only`` keeps the ``up`` ones.  A cluster whose owning process
    still runs is never touched.  Returns the tags removed.
    """
    removed = []
    for c in list_clusters():
        if tag is not None and c["tag"] != tag:
            continue
        if c["owner_alive"]:
            if tag is not None:
                raise EmulationError(
                    f"cluster {tag} belongs to running process {c['owner']['pid']}; close it there"
                )
            continue
        if stale_only and c["owner"] is None:
            continue
        st = State.load(Path(c["dir"]))
        if st is not None and not teardown(st, quiet=False):
            removed.append(c["tag"])
    if tag is not None and tag not in removed and not any(c["tag"] == tag for c in list_clusters()):
        if not removed:
            raise EmulationError(f"no emulated cluster {tag} (see `sparsecoded emulate list`)")
    return removed
