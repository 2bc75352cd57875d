"""``sparsecoded emulate up N [--cpu F[,F...]] [--link-mbit R] [--json] | down [TAG] | list``.

``up`` leaves the hosts running (a detached cluster, no owner process) and
prints them with the SSH command to reach them; ``down`` removes the clusters
``up`` made and the stale ones of processes that died, or one by tag; ``list``
shows them.  Errors propagate to the command line's ``main``, which maps them
to its exit statuses (a failure of the work 1, a bad value 2, Ctrl-C 130).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .cluster import EdgeCluster
from .state import down, list_clusters


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``emulate up|down|list`` on argparse ``subparsers``; the handler is :func:`main`."""
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
    return p


def _values(text: str | None) -> float | list[float] | None:
    if text is None:
        return None
    vals = [float(t) for t in str(text).split(",") if t.strip()]
    return vals[0] if len(vals) == 1 else vals


def main(args: argparse.Namespace) -> int:
    """Handler of ``sparsecoded emulate``."""
    if args.emulate_command == "up":
        edge = EdgeCluster(args.n_hosts, cpu=_values(args.cpu), link_mbit=_values(args.link_mbit))
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
