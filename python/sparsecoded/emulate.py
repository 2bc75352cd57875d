"""An emulated edge cluster on one Linux machine: real hosts, really slow devices.

:class:`EdgeCluster` brings up ``n`` *hosts*, each a network namespace with its
own address on a private bridge, its own ``sshd`` (key-only root login, host
key pinned in a known_hosts file of the cluster's own) and its own cpu cgroup.
The sshd lives in that cgroup, so everything started over SSH on the host
(the Dask nanny and worker of :meth:`EdgeCluster.pool`, every thread and child
of theirs) inherits it: a quota of 0.1 core caps the whole device at a tenth
of a core, its computation, its (de)serialisation and its event loop alike.
Stragglers are then devices that really compute slowly, not sleeps injected
in the worker, and :meth:`EdgeCluster.set_cpu` slows or restores them while a
job runs.

Needs root on Linux, ``ip`` (iproute2), OpenSSH's ``sshd``, a cpu cgroup
controller (v1 ``cpu.cfs_quota_us`` or v2 ``cpu.max``), ``tc`` for
``link_mbit``, and ``asyncssh`` (key generation and the pool's SSH client).
What is missing is named in one :class:`EmulationError`.

Quota and period.  The cpu controller grants ``quota`` microseconds of CPU
every ``period``.  The kernel's default period, 100 ms, would let a device at
10 % run a 5 ms task at full speed and then sleep 90 ms: a short task would not
be slowed at all.  The cluster sets a 10 ms period (longer only below 10 %,
since the smallest quota is 1 ms), so the throttling is smooth at the scale of
a round.

Every name carries a tag unique to the cluster (``sc`` + 6 random hex
digits): namespaces ``<tag>-h1..n``, bridge ``<tag>br``, veths ``<tag>v1..n``,
cgroups ``sparsecoded-<tag>-h1..n``, state in ``/run/sparsecoded/emulate/<tag>``
(override with ``SPARSECODED_EMULATE_DIR``).  What is made is written to the
state file *before* it is made, so :func:`down` (``sparsecoded emulate down``)
removes exactly that, after a crash too, and never touches anything else.

Examples
--------
>>> with EdgeCluster(6, cpu=0.3) as edge:            # doctest: +SKIP
...     pool = edge.pool()
...     edge.set_cpu([1, 4], 0.1)                       # two devices at 10 % of a core
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import json
import logging
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "EdgeCluster",
    "EmulationError",
    "add_cli",
    "down",
    "list_clusters",
    "requirements_missing",
]

#: where clusters keep their state, keys and sshd configs
DEFAULT_STATE_DIR = "/run/sparsecoded/emulate"
#: the smallest CFS quota the kernel accepts, and the period used above 10 %
_MIN_QUOTA_US = 1000
_PERIOD_US = 10_000
_SSH_PORT = 22


class EmulationError(OSError):
    """The cluster cannot be brought up (missing rights or tools), or a step failed."""


def _state_root() -> Path:
    return Path(os.environ.get("SPARSECODED_EMULATE_DIR", DEFAULT_STATE_DIR))


# ----------------------------------------------------------------------------- requirements


def _which(name: str, *extra: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin", *extra):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def _cpu_cgroup_root() -> tuple[str, Path] | None:
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
    """What this machine lacks for an :class:`EdgeCluster` (empty: nothing)."""
    missing = []
    if not sys.platform.startswith("linux"):
        return [f"Linux (this is {sys.platform})"]
    if os.geteuid() != 0:
        missing.append("root (network namespaces and cgroups need it; run with sudo)")
    if _which("ip") is None:
        missing.append("`ip` (iproute2)")
    if _which("sshd") is None:
        missing.append("`sshd` (OpenSSH server, e.g. apt-get install openssh-server)")
    if link_mbit is not None and _which("tc") is None:
        missing.append("`tc` (iproute2) for link_mbit")
    if _cpu_cgroup_root() is None:
        missing.append("a cpu cgroup controller (cgroup v1 `cpu` or v2 with `cpu` enabled)")
    try:
        import asyncssh  # noqa: F401
    except ImportError:
        missing.append("asyncssh (pip install 'sparsecoded[dask]')")
    return missing


def _require(link_mbit: Any = None) -> None:
    missing = requirements_missing(link_mbit)
    if missing:
        raise EmulationError("an emulated edge cluster needs " + ", ".join(missing))


# ----------------------------------------------------------------------------- small tools


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise EmulationError(f"`{' '.join(cmd)}` failed: {msg[-1] if msg else proc.returncode}")
    return proc


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (to tell a reused pid from ours)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int | None, started: str | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not) and is the process started at ``started``."""
    if not pid:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X") and (started is None or fields[19] == started)


def _period_for(fraction: float) -> int:
    return max(_PERIOD_US, math.ceil(_MIN_QUOTA_US / fraction))


def _check_fraction(value: Any, what: str = "cpu") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a fraction of a core > 0, got {value!r}")
    f = float(value)
    if not (f > 0 and math.isfinite(f)):
        raise ValueError(f"{what} must be a fraction of a core > 0, got {value!r}")
    if f < 0.001:
        raise ValueError(f"{what} must be at least 0.001 of a core, got {value!r}")
    return f


class _CpuGroups:
    """Create, throttle, fill and remove cpu cgroups (v1 or v2)."""

    def __init__(self) -> None:
        found = _cpu_cgroup_root()
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
        period = _period_for(fraction)
        quota = max(_MIN_QUOTA_US, round(fraction * period))
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
            pids = self.pids(name)
            for pid in pids:
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


# ----------------------------------------------------------------------------- state


class _State:
    """What a cluster made, on disk before it is made (for ``down`` after a crash)."""

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
        self.data.setdefault(key, [])
        if value not in self.data[key]:
            self.data[key].append(value)
        self.save()

    @classmethod
    def load(cls, directory: Path) -> _State | None:
        try:
            return cls(directory, json.loads((directory / "state.json").read_text()))
        except (OSError, ValueError):
            return None


def _pick_subnet(rng: random.Random) -> ipaddress.IPv4Network:
    """A /24 in 10.216-254.x.0 that no address or route here touches."""
    used = []
    for cmd in (("-4", "-o", "addr", "show"), ("-4", "route", "show", "table", "all")):
        out = _run(_which("ip") or "ip", *cmd, check=False).stdout
        for tok in out.split():
            with contextlib.suppress(ValueError):
                if tok[0].isdigit() and ("/" in tok or tok.count(".") == 3):
                    used.append(ipaddress.ip_network(tok, strict=False))
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{rng.randint(216, 254)}.{rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise EmulationError("no free private /24 subnet found for the emulated hosts")


def _teardown(state: _State, quiet: bool = True) -> list[str]:
    """Remove everything ``state`` lists; returns what could not be removed."""
    d = state.data
    ip = _which("ip") or "ip"
    problems: list[str] = []
    # 1. processes: the sshds (checked to still be ours), then all in the cgroups and namespaces
    for entry in d.get("sshd", []):
        if _alive(entry.get("pid"), entry.get("started")):
            with contextlib.suppress(OSError):
                os.kill(entry["pid"], signal.SIGTERM)
    groups = None
    with contextlib.suppress(EmulationError):
        groups = _CpuGroups()
    for ns in d.get("netns", []):
        out = _run(ip, "netns", "pids", ns, check=False).stdout
        for tok in out.split():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(tok), signal.SIGKILL)
    for name in d.get("cgroups", []):
        if groups is not None:
            try:
                groups.remove(name)
            except OSError as exc:
                problems.append(f"cgroup {name}: {exc}")
    for entry in d.get("sshd", []):
        pid = entry.get("pid")
        deadline = time.monotonic() + 3
        while _alive(pid, entry.get("started")) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.02)
        if _alive(pid, entry.get("started")):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
    # 2. network: namespaces (their veth ends go with them), veths, the bridge
    for ns in d.get("netns", []):
        if Path(f"/run/netns/{ns}").exists():
            r = _run(ip, "netns", "del", ns, check=False)
            if r.returncode != 0:
                problems.append(f"netns {ns}: {r.stderr.strip()}")
    for link in [*d.get("veths", []), *d.get("bridges", [])]:
        if Path(f"/sys/class/net/{link}").exists():
            r = _run(ip, "link", "del", link, check=False)
            if r.returncode != 0 and Path(f"/sys/class/net/{link}").exists():
                problems.append(f"link {link}: {r.stderr.strip()}")
    # 3. the state itself (keys, configs, logs)
    if not problems:
        shutil.rmtree(state.dir, ignore_errors=True)
    elif not quiet:
        print("sparsecoded emulate: could not remove " + "; ".join(problems), file=sys.stderr)
    return problems


def list_clusters() -> list[dict[str, Any]]:
    """The clusters in the state folder: tag, hosts, owner pid (None: started by ``up``), alive."""
    root = _state_root()
    out = []
    if not root.is_dir():
        return out
    for child in sorted(root.iterdir()):
        st = _State.load(child) if child.is_dir() else None
        if st is None:
            continue
        owner = st.data.get("owner")
        out.append(
            {
                "tag": st.data.get("tag", child.name),
                "hosts": st.data.get("hosts", []),
                "owner": owner,
                "owner_alive": bool(owner) and _alive(owner["pid"], owner["started"]),
                "dir": str(child),
            }
        )
    return out


def down(tag: str | None = None, *, stale_only: bool = False) -> list[str]:
    """Remove clusters made by :class:`EdgeCluster` or ``sparsecoded emulate up``.

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
        st = _State.load(Path(c["dir"]))
        if st is not None and not _teardown(st, quiet=False):
            removed.append(c["tag"])
    if tag is not None and tag not in removed and not any(c["tag"] == tag for c in list_clusters()):
        if not removed:
            raise EmulationError(f"no emulated cluster {tag} (see `sparsecoded emulate list`)")
    return removed


# ----------------------------------------------------------------------------- the cluster

_OPEN: set[EdgeCluster] = set()
_OPEN_LOCK = threading.Lock()


def _close_all_at_exit() -> None:
    for c in list(_OPEN):
        with contextlib.suppress(BaseException):
            c.close()


atexit.register(_close_all_at_exit)


_CLOSED_COMM_WORDS = ("CommClosedError", "StreamClosedError", "Stream is closed")


def _is_closed_comm(exc: BaseException | None) -> bool:
    while exc is not None:
        if type(exc).__name__ in ("CommClosedError", "StreamClosedError"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _quiet_closed_comms(pool: Any) -> None:
    """On the pool's event loop, drop "Task exception was never retrieved" for closed comms.

    When the cluster stops, the scheduler's last broadcast to nannies that
    already left fails with ``CommClosedError`` in a task nobody awaits, and
    asyncio prints its traceback when the task is collected: noise on a path
    that worked.  Every other exception still goes to the default handler.
    """
    loop = getattr(getattr(getattr(pool, "client", None), "loop", None), "asyncio_loop", None)
    if loop is None:
        return
    previous = loop.get_exception_handler()

    def handler(lp: Any, context: dict[str, Any]) -> None:
        if _is_closed_comm(context.get("exception")):
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)


class _DropClosedComms(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and _is_closed_comm(record.exc_info[1]):
            return False
        return not any(w in text for w in _CLOSED_COMM_WORDS)


@contextlib.contextmanager
def _closing_quietly() -> Any:
    """While our own pools stop, Dask's errors about comms that closed are expected: drop them."""
    flt = _DropClosedComms()
    names = (
        "distributed.scheduler",
        "distributed.core",
        "distributed.nanny",
        "distributed.worker",
        "distributed.comm",
        "distributed.client",
        "distributed.deploy.ssh",
        "asyncio",
    )
    loggers = [logging.getLogger(n) for n in names]
    for lg in loggers:
        lg.addFilter(flt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(flt)


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
        self.cpu = self._per_host(1.0 if cpu is None else cpu, "cpu", _check_fraction)
        self.link_mbit = (
            None
            if link_mbit is None
            else self._per_host(link_mbit, "link_mbit", lambda v, w: _check_fraction(v, w))
        )
        self.python = python or sys.executable
        self.tag = "sc" + "".join(
            random.SystemRandom().choice("0123456789abcdef") for _ in range(6)
        )
        self.hosts: list[str] = []
        self.gateway: str | None = None
        self._state: _State | None = None
        self._groups: _CpuGroups | None = None
        self._procs: list[subprocess.Popen] = []
        self._pools: list[Any] = []
        self._started = False
        self._closed = False
        self._old_sigterm: Any = None
        self._detached = False

    def _per_host(self, value: Any, what: str, check: Any) -> list[float]:
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
        return _state_root() / self.tag

    @property
    def connect_options(self) -> dict[str, Any]:
        """Keywords for ``asyncssh.connect`` (and :func:`sparsecoded.ssh_pool`)."""
        d = self.state_dir
        return {
            "port": _SSH_PORT,
            "username": "root",
            "client_keys": [str(d / "client_ed25519")],
            "known_hosts": str(d / "known_hosts"),
            "config": None,
            "agent_path": None,
        }

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
        _require(self.link_mbit)
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
        import asyncssh

        ip = _which("ip") or "ip"
        sshd = _which("sshd")
        root = _state_root()
        root.mkdir(parents=True, exist_ok=True)
        self._groups = _CpuGroups()
        rng = random.Random()
        with open(root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.state_dir.mkdir(mode=0o700)
            owner = (
                None
                if self._detached
                else {"pid": os.getpid(), "started": _start_time(os.getpid())}
            )
            self._state = _State(
                self.state_dir,
                {"tag": self.tag, "owner": owner, "n_hosts": self.n_hosts, "created": time.time()},
            )
            self._state.save()
            net = _pick_subnet(rng)
            addrs = list(net.hosts())
            self.gateway = str(addrs[0])
            self.hosts = [str(addrs[i + 1]) for i in range(self.n_hosts)]
            self._state.data.update(
                {"subnet": str(net), "gateway": self.gateway, "hosts": self.hosts}
            )
            bridge = f"{self.tag}br"
            self._state.add("bridges", bridge)
            _run(ip, "link", "add", bridge, "type", "bridge")
            _run(ip, "addr", "add", f"{self.gateway}/24", "dev", bridge)
            _run(ip, "link", "set", bridge, "up")
        # keys: one host key for all hosts (pinned), one client key
        d = self.state_dir
        for name in ("host_ed25519", "client_ed25519"):
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"sparsecoded-{self.tag}")
            key.write_private_key(str(d / name))
            key.write_public_key(str(d / f"{name}.pub"))
            os.chmod(d / name, 0o600)
        shutil.copy(d / "client_ed25519.pub", d / "authorized_keys")
        os.chmod(d / "authorized_keys", 0o600)
        host_pub = " ".join((d / "host_ed25519.pub").read_text().split()[:2])
        (d / "known_hosts").write_text("".join(f"{h} {host_pub}\n" for h in self.hosts))
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        for i, addr in enumerate(self.hosts):
            self._bring_up_host(i, addr, ip, sshd, bridge)
        for i, addr in enumerate(self.hosts):
            self._wait_for_sshd(i, addr)

    def _bring_up_host(self, i: int, addr: str, ip: str, sshd: str | None, bridge: str) -> None:
        assert self._state is not None
        assert self._groups is not None
        ns, veth, d = self.netns(i), f"{self.tag}v{i + 1}", self.state_dir
        self._state.add("netns", ns)
        _run(ip, "netns", "add", ns)
        self._state.add("veths", veth)
        _run(ip, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _run(ip, "link", "set", veth, "master", bridge, "up")
        _run(ip, "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        _run(ip, "-n", ns, "link", "set", "eth0", "up")
        _run(ip, "-n", ns, "link", "set", "lo", "up")
        if self.link_mbit is not None:
            tc = _which("tc") or "tc"
            rate = self.link_mbit[i]
            burst = max(16 * 1024, int(rate * 1e6 / 8 / 100))  # 10 ms of traffic
            for cmd in (
                (tc, "qdisc", "add", "dev", veth, "root"),
                (ip, "netns", "exec", ns, tc, "qdisc", "add", "dev", "eth0", "root"),
            ):
                _run(*cmd, "tbf", "rate", f"{rate}mbit", "burst", str(burst), "latency", "50ms")
        group = self._cgroup_name(i)
        self._state.add("cgroups", group)
        self._groups.create(group)
        self._groups.set(group, self.cpu[i])
        cfg = d / f"sshd_config.h{i + 1}"
        cfg.write_text(
            "\n".join(
                [
                    f"ListenAddress {addr}",
                    f"Port {_SSH_PORT}",
                    f"HostKey {d / 'host_ed25519'}",
                    "PidFile none",
                    f"AuthorizedKeysFile {d / 'authorized_keys'}",
                    "AuthenticationMethods publickey",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "X11Forwarding no",
                    "AllowTcpForwarding no",
                    "AllowAgentForwarding no",
                    "PermitTunnel no",
                    "MaxStartups 64:30:128",
                    "MaxSessions 64",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        # -D: the sshd stays this process's child with a known pid; its own
        # session keeps terminal signals (Ctrl-C) away from it: close() ends it
        proc = subprocess.Popen(
            [
                _which("ip") or "ip",
                "netns",
                "exec",
                ns,
                str(sshd),
                "-D",
                "-f",
                str(cfg),
                "-E",
                str(d / f"sshd-h{i + 1}.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._procs.append(proc)
        # `ip netns exec` execs sshd in place: this pid is the sshd; into the
        # cgroup before any login, so every session and worker inherits it
        self._state.add("sshd", {"pid": proc.pid, "started": _start_time(proc.pid), "host": i})
        self._groups.add(group, proc.pid)

    def _wait_for_sshd(self, i: int, addr: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        proc = self._procs[i]
        while True:
            if proc.poll() is not None:
                log = self.state_dir / f"sshd-h{i + 1}.log"
                why = log.read_text().strip().splitlines()[-1:] if log.exists() else []
                raise EmulationError(
                    f"sshd of host {i} ({addr}) exited with status {proc.returncode}"
                    + (f": {why[0]}" if why else "")
                )
            with contextlib.suppress(OSError), socket.create_connection((addr, _SSH_PORT), 0.5):
                return
            if time.monotonic() > deadline:
                raise EmulationError(f"sshd of host {i} ({addr}) did not listen within {timeout} s")
            time.sleep(0.05)

    def set_cpu(self, host_indices: int | Iterable[int], fraction: float) -> None:
        """Cap the given hosts (0-based) at ``fraction`` of a core, now (also mid-round)."""
        if self._groups is None or self._closed:
            raise EmulationError("the cluster is not running")
        f = _check_fraction(fraction, "fraction")
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
        _quiet_closed_comms(p)
        return p

    def close(self) -> None:
        """Stop the pools, workers and sshds; remove the namespaces, links, cgroups and state."""
        if self._closed:
            return
        self._closed = True
        main = threading.current_thread() is threading.main_thread()
        old_int = None
        if main:  # a second Ctrl-C must not leave half a cluster behind
            with contextlib.suppress(ValueError):
                old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            with _closing_quietly():
                for p in reversed(self._pools):
                    with contextlib.suppress(Exception):
                        p.close()
            self._pools.clear()
            problems = []
            if self._state is not None:
                problems = _teardown(self._state)
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
                    if self._old_sigterm is not None:
                        signal.signal(signal.SIGTERM, self._old_sigterm)

    def detach(self) -> None:
        """Leave the cluster running after this process (``sparsecoded emulate down`` ends it)."""
        with _OPEN_LOCK:
            _OPEN.discard(self)
        self._closed = True

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self.hosts else "not started")
        return f"EdgeCluster({self.n_hosts}, tag={self.tag!r}, hosts={self.hosts}, {state})"


# ----------------------------------------------------------------------------- CLI


def add_cli(subparsers: Any) -> None:
    """Register ``emulate up N [--cpu ...] [--link-mbit ...]``, ``emulate down [TAG]`` and
    ``emulate list`` on an argparse subparsers object; the handler is ``main``."""
    p = subparsers.add_parser(
        "emulate",
        help="bring up or remove an emulated edge cluster (root, Linux)",
        description="Network-namespace hosts, each with its own sshd and cpu cgroup. "
        "`up` leaves them running and prints the hosts and SSH options; `down` removes them.",
    )
    sub = p.add_subparsers(dest="emulate_command", required=True)
    up = sub.add_parser("up", help="bring up N hosts and leave them running")
    up.add_argument("n_hosts", type=int, help="number of hosts")
    up.add_argument(
        "--cpu",
        default=None,
        help="fraction of a core per host: one value, or a comma list with one per host "
        "(default 1.0)",
    )
    up.add_argument("--link-mbit", default=None, help="rate limit per host link (Mbit/s)")
    up.add_argument("--json", action="store_true", help="print one JSON object")
    dn = sub.add_parser("down", help="remove the clusters `up` made (or one, by tag)")
    dn.add_argument("tag", nargs="?", default=None, help="remove this cluster only")
    sub.add_parser("list", help="list the emulated clusters")
    p.set_defaults(func=main)


def _values(text: str | None) -> float | list[float] | None:
    if text is None:
        return None
    vals = [float(t) for t in str(text).split(",") if t.strip()]
    return vals[0] if len(vals) == 1 else vals


def main(args: Any) -> int:
    """Handler of ``sparsecoded emulate``; errors are one line, exit status 2."""
    try:
        if args.emulate_command == "up":
            edge = EdgeCluster(
                args.n_hosts, cpu=_values(args.cpu), link_mbit=_values(args.link_mbit)
            )
            edge.start(detach=True)
            edge.detach()
            info = {
                "tag": edge.tag,
                "hosts": edge.hosts,
                "gateway": edge.gateway,
                "cpu": edge.cpu,
                "cgroups": [str(edge.cgroup(i)) for i in range(edge.n_hosts)],
                "connect_options": edge.connect_options,
            }
            if args.json:
                print(json.dumps(info))
            else:
                print(f"cluster {edge.tag}: {edge.n_hosts} hosts {' '.join(edge.hosts)}")
                print(
                    f"  ssh -i {edge.state_dir}/client_ed25519 -o UserKnownHostsFile="
                    f"{edge.state_dir}/known_hosts root@{edge.hosts[0]}"
                )
                print(f"  remove with: sparsecoded emulate down {edge.tag}")
            return 0
        if args.emulate_command == "down":
            removed = down(args.tag)
            print("removed " + (" ".join(removed) if removed else "nothing"))
            return 0
        for c in list_clusters():
            who = "up" if c["owner"] is None else f"pid {c['owner']['pid']}"
            state = "" if c["owner"] is None or c["owner_alive"] else " (stale)"
            print(f"{c['tag']}  {who}{state}  {' '.join(c['hosts'])}")
        return 0
    except (EmulationError, ValueError, OSError) as exc:
        print(f"sparsecoded emulate: error: {exc}", file=sys.stderr)
        return 2
