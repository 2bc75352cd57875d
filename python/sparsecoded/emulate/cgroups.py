"""The hosts' cpu cgroups, v1 (``cpu.cfs_quota_us``) or v2 (``cpu.max``): a quota per device.

Quota and period.  The cpu controller grants ``quota`` microseconds of CPU
every ``period``.  The kernel's default period, 100 ms, would let a device at
10 % run a 5 ms task at full speed and then sleep 90 ms: a short task would not
be slowed at all.  The groups get a 10 ms period (longer only below 10 %,
since the smallest quota is 1 ms), so the throttling is smooth at the scale of
a round (:func:`period_for`).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

from .system import EmulationError, cpu_cgroup_root

#: the smallest CFS quota the kernel accepts, and the period used above 10 %
MIN_QUOTA_US = 1000
PERIOD_US = 10_000


def period_for(fraction: float) -> int:
    """The period (us) for a quota of ``fraction`` of a core: 10 ms, longer below 10 %."""
    return max(PERIOD_US, math.ceil(MIN_QUOTA_US / fraction))


def check_fraction(value: Any, what: str = "cpu") -> float:
    """``value`` as a fraction of a core (> 0, finite, at least 0.001), or a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a fraction of a core > 0, got {value!r}")
    f = float(value)
    if not (f > 0 and math.isfinite(f)):
        raise ValueError(f"{what} must be a fraction of a core > 0, got {value!r}")
    if f < 0.001:
        raise ValueError(f"{what} must be at least 0.001 of a core, got {value!r}")
    return f


class CpuGroups:
    """Create, throttle, fill and remove cpu cgroups (v1 or v2)."""

    def __init__(self) -> None:
        found = cpu_cgroup_root()
        if found is None:
            raise EmulationError("an emulated edge cluster needs a cpu cgroup controller")
        self.version, self.root = found

    def path(self, name: str) -> Path:
        return self.root / name

    def create(self, name: str) -> Path:
        p = self.path(name)
        if self.version == "v2":
            sub = self.root / "cgroup.subtree_control"
            with contextlib.suppress(OSError):
                if "cpu" not in sub.read_text().split():
                    sub.write_text("+cpu")
        try:
            p.mkdir()
        except OSError as exc:
            raise EmulationError(f"cannot create the cgroup {p}: {exc.strerror}") from exc
        return p

    def set(self, name: str, fraction: float) -> None:
        p = self.path(name)
        period = period_for(fraction)
        quota = max(MIN_QUOTA_US, round(fraction * period))
        try:
            if self.version == "v1":
                (p / "cpu.cfs_quota_us").write_text("-1")
                (p / "cpu.cfs_period_us").write_text(str(period))
                (p / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (p / "cpu.max").write_text(f"{quota} {period}")
        except OSError as exc:
            raise EmulationError(f"cannot set the cpu quota of {p}: {exc.strerror}") from exc

    def add(self, name: str, pid: int) -> None:
        (self.path(name) / "cgroup.procs").write_text(str(pid))

    def pids(self, name: str) -> list[int]:
        try:
            text = (self.path(name) / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(t) for t in text.split()]

    def remove(self, name: str, wait: float = 5.0) -> None:
        """Kill whatever is left in the group, then remove it."""
        p = self.path(name)
        if not p.exists():
            return
        deadline = time.monotonic() + wait
        while True:
            for pid in self.pids(name):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            try:
                p.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
