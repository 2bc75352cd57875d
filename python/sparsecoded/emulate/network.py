"""The hosts' network: a private /24 on a bridge, one namespace and veth pair per host, ``tc``.

Host ``i`` is the namespace ``<tag>-h<i+1>``; its ``eth0`` is one end of the
veth ``<tag>v<i+1>``, whose other end is on the bridge ``<tag>br`` that holds
the gateway address (the master's side: the Dask scheduler listens there).
``link_mbit`` puts a token bucket on both ends.  Each function makes one thing
with ``ip``/``tc``; the caller records its name in the state first.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
from collections.abc import Iterable
from pathlib import Path

from .system import EmulationError, run, which


def ip() -> str:
    return which("ip") or "ip"


def pick_subnet(rng: random.Random) -> ipaddress.IPv4Network:
    """A /24 in 10.216-254.x.0 that no address or route here touches."""
    used = []
    for cmd in (("-4", "-o", "addr", "show"), ("-4", "route", "show", "table", "all")):
        out = run(ip(), *cmd, check=False).stdout
        for tok in out.split():
            with contextlib.suppress(ValueError):
                if tok[0].isdigit() and ("/" in tok or tok.count(".") == 3):
                    used.append(ipaddress.ip_network(tok, strict=False))
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{rng.randint(216, 254)}.{rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise EmulationError("no free private /24 subnet found for the emulated hosts")


def add_bridge(bridge: str, gateway: str) -> None:
    """The bridge ``bridge`` with the address ``gateway``/24, up."""
    run(ip(), "link", "add", bridge, "type", "bridge")
    run(ip(), "addr", "add", f"{gateway}/24", "dev", bridge)
    run(ip(), "link", "set", bridge, "up")


def add_netns(ns: str) -> None:
    run(ip(), "netns", "add", ns)


def add_host_link(
    ns: str, veth: str, bridge: str, addr: str, rate_mbit: float | None = None
) -> None:
    """The veth ``veth`` on ``bridge``, its peer ``eth0`` in ``ns`` at ``addr``/24; ``lo`` up."""
    run(ip(), "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    run(ip(), "link", "set", veth, "master", bridge, "up")
    run(ip(), "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
    run(ip(), "-n", ns, "link", "set", "eth0", "up")
    run(ip(), "-n", ns, "link", "set", "lo", "up")
    if rate_mbit is not None:
        tc = which("tc") or "tc"
        burst = max(16 * 1024, int(rate_mbit * 1e6 / 8 / 100))  # 10 ms of traffic
        for cmd in (
            (tc, "qdisc", "add", "dev", veth, "root"),
            (ip(), "netns", "exec", ns, tc, "qdisc", "add", "dev", "eth0", "root"),
        ):
            run(*cmd, "tbf", "rate", f"{rate_mbit}mbit", "burst", str(burst), "latency", "50ms")


def netns_pids(ns: str) -> list[int]:
    """The processes in namespace ``ns`` (none if it is gone)."""
    out = run(ip(), "netns", "pids", ns, check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit()]


def remove_netns(names: Iterable[str]) -> list[str]:
    """Delete the namespaces that exist (their veth ends go with them); what failed."""
    problems = []
    for ns in names:
        if Path(f"/run/netns/{ns}").exists():
            r = run(ip(), "netns", "del", ns, check=False)
            if r.returncode != 0:
                problems.append(f"netns {ns}: {r.stderr.strip()}")
    return problems


def remove_links(names: Iterable[str]) -> list[str]:
    """Delete the links (veths, bridges) that exist; what failed."""
    problems = []
    for link in names:
        if Path(f"/sys/class/net/{link}").exists():
            r = run(ip(), "link", "del", link, check=False)
            if r.returncode != 0 and Path(f"/sys/class/net/{link}").exists():
                problems.append(f"link {link}: {r.stderr.strip()}")
    return problems
