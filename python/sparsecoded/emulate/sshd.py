"""The hosts' OpenSSH servers and the cluster's own keys.

One host key for every host, pinned in the cluster's ``known_hosts``; one
client key, the only one ``authorized_keys`` lists; key-only root login.
Each host's ``sshd`` runs in the foreground (``-D``) inside its namespace, a
child of the process that started the cluster, with a known pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .network import ip
from .system import EmulationError, which

SSH_PORT = 22


def write_keys(d: Path, hosts: Sequence[str], tag: str) -> None:
    """Host and client ed25519 keys in ``d``; ``authorized_keys``; ``known_hosts`` for ``hosts``."""
    import asyncssh

    for name in ("host_ed25519", "client_ed25519"):
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"sparsecoded-{tag}")
        key.write_private_key(str(d / name))
        key.write_public_key(str(d / f"{name}.pub"))
        os.chmod(d / name, 0o600)
    shutil.copy(d / "client_ed25519.pub", d / "authorized_keys")
    os.chmod(d / "authorized_keys", 0o600)
    host_pub = " ".join((d / "host_ed25519.pub").read_text().split()[:2])
    (d / "known_hosts").write_text("".join(f"{h} {host_pub}\n" for h in hosts))


def connect_options(d: Path) -> dict[str, Any]:
    """Keywords for ``asyncssh.connect`` with the keys in ``d`` (and nothing of the user's)."""
    return {
        "port": SSH_PORT,
        "username": "root",
        "client_keys": [str(d / "client_ed25519")],
        "known_hosts": str(d / "known_hosts"),
        "config": None,
        "agent_path": None,
    }


def write_config(d: Path, host: int, addr: str) -> Path:
    """The sshd_config of host ``host`` (0-based), listening on ``addr`` only."""
    cfg = d / f"sshd_config.h{host + 1}"
    cfg.write_text(
        "\n".join(
            [
                f"ListenAddress {addr}",
                f"Port {SSH_PORT}",
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
    return cfg


def log_path(d: Path, host: int) -> Path:
    return d / f"sshd-h{host + 1}.log"


def start(ns: str, cfg: Path, log: Path) -> subprocess.Popen:
    """sshd in namespace ``ns``: ``ip netns exec`` execs it in place, so the pid is the sshd's.

    ``-D``: it stays this process's child; its own session keeps terminal
    signals (Ctrl-C) away from it: the cluster's close ends it.
    """
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    return subprocess.Popen(
        [ip(), "netns", "exec", ns, str(which("sshd")), "-D", "-f", str(cfg), "-E", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_listening(
    proc: subprocess.Popen, host: int, addr: str, log: Path, timeout: float = 20.0
) -> None:
    """Until the sshd of ``host`` accepts connections; its exit or the timeout is an error."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            why = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            raise EmulationError(
                f"sshd of host {host} ({addr}) exited with status {proc.returncode}"
                + (f": {why[0]}" if why else "")
            )
        with contextlib.suppress(OSError), socket.create_connection((addr, SSH_PORT), 0.5):
            return
        if time.monotonic() > deadline:
            raise EmulationError(f"sshd of host {host} ({addr}) did not listen within {timeout} s")
        time.sleep(0.05)
