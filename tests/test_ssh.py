"""ssh_pool over a real sshd on 127.0.0.1 (started by ``.ci/sshd.sh start``).

The tests need SSHD_DIR and SSHD_PORT (what ``.ci/sshd.sh start`` prints).
Without them they skip, unless SPARSECODED_REQUIRE_SSH=1 (set by ``.ci/run``),
which makes the missing server a failure: CI cannot pass by skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.sparse as sp

from sparsecoded.stragglers import Crash

pytest.importorskip("distributed")
pytest.importorskip("asyncssh")

pytestmark = pytest.mark.ssh

N = 3


@pytest.fixture(scope="module")
def connect_options():
    d, port = os.environ.get("SSHD_DIR"), os.environ.get("SSHD_PORT")
    if not (d and port):
        why = "no loopback sshd: run `bash .ci/sshd.sh start` and export what it prints"
        if os.environ.get("SPARSECODED_REQUIRE_SSH") == "1":
            pytest.fail(f"SPARSECODED_REQUIRE_SSH=1 but {why}")
        pytest.skip(why)
    return {
        "port": int(port),
        "username": "root",
        "client_keys": [os.path.join(d, "client_ed25519")],
        "known_hosts": os.path.join(d, "known_hosts"),  # pinned host key, nothing else
        "config": None,  # ignore ~/.ssh/config
        "agent_path": None,
    }


@pytest.fixture(scope="module")
def pool(connect_options):
    from sparsecoded import ssh_pool

    # the remote shell does not know this virtual environment: name its interpreter
    p = ssh_pool(["127.0.0.1"] * N, connect_options=connect_options, python=sys.executable)
    yield p
    p.close()


def _processes_mentioning(text):
    out = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if text in line and "ps -eww" not in line]


def test_ssh_pool_is_exact_and_survives_a_crash(pool, rng):
    from sparsecoded import DaskPool

    assert isinstance(pool, DaskPool)
    assert pool.names == list(range(N))
    assert sorted(pool.alive()) == list(range(N))
    blocks = [sp.random_array((20, 15), density=0.3, format="csr", rng=rng) for _ in range(N)]
    x = rng.standard_normal(15)
    pool.place("A", [[b] for b in blocks])
    rr = pool.run("A", "matvec", x, enough=lambda r: len(r) == N)
    for w in range(N):
        _want = blocks[w] @ x
        np.testing.assert_allclose(
            rr.results[(w, 0)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
        )

    # worker 1 dies mid-round; the others decide the round; its nanny (started
    # over SSH) restarts it under the same name and the pool re-places block 1
    old = pool.client.sync(pool._identity)[1]
    rr = pool.run("A", "matvec", x, enough=lambda r: len(r) == N - 1, actions=Crash([1]).plan(N, 0))
    assert sorted(rr.answered) == [0, 2]
    # the round may end before the scheduler notices the death: wait for the new process
    deadline = time.monotonic() + 90
    while pool.client.sync(pool._identity).get(1) in (None, old):
        assert time.monotonic() < deadline, "worker 1 was not restarted"
        time.sleep(0.1)
    pool.wait_for_workers(timeout=90)
    rr = pool.run("A", "matvec", 3 * x, enough=lambda r: len(r) == N)
    _want = blocks[1] @ (3 * x)
    np.testing.assert_allclose(
        rr.results[(1, 0)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
    )


def test_close_stops_the_remote_workers(connect_options, rng):
    from sparsecoded import ssh_pool

    p = ssh_pool(["localhost", "127.0.0.1"], connect_options=connect_options, python=sys.executable)
    scheduler = p.client.scheduler.address
    port = scheduler.rsplit(":", 1)[1]
    assert scheduler.startswith("tcp://127.0.0.1:")  # the master's side of the loopback route
    assert len(_processes_mentioning(scheduler)) >= 2  # the two remote dask-spec commands
    b = sp.random_array((6, 5), density=0.5, format="csr", rng=rng)
    p.place("A", [[b], [2 * b]])
    rr = p.run("A", "matvec", np.ones(5), enough=lambda r: len(r) == 2)
    _want = 2 * (b @ np.ones(5))
    np.testing.assert_allclose(
        rr.results[(1, 0)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
    )
    p.close()
    assert p.client.status == "closed"
    deadline = time.monotonic() + 30
    while _processes_mentioning(f":{port}"):
        assert time.monotonic() < deadline, _processes_mentioning(f":{port}")
        time.sleep(0.2)


def test_bad_ssh_arguments():
    from sparsecoded import ssh_pool

    with pytest.raises(ValueError, match="hosts is empty"):
        ssh_pool([])
    with pytest.raises(ValueError, match="connect_options has 1 entries, expected one per host"):
        ssh_pool(["a", "b"], connect_options=[{}])
    for bad in (0, 2.0, True):  # refused before any connection is tried
        with pytest.raises(ValueError, match="threads_per_worker must be an int >= 1|must be >= 1"):
            ssh_pool(["a", "b"], threads_per_worker=bad)


def test_ssh_pool_rejects_a_single_string():
    from sparsecoded import ssh_pool

    # a str is a sequence too: "node1" would start five workers on hosts "n", "o", ...
    with pytest.raises(
        ValueError, match=r"hosts must be a sequence of host names.*got a str 'node1'"
    ):
        ssh_pool("node1")


class _FakeCluster:
    made: list = []

    def __init__(self, workers, scheduler, name=None):
        self.closed = False
        _FakeCluster.made.append(self)
        if self.fail is not None:
            raise self.fail

    fail = None

    def close(self):
        self.closed = True


class _FakeClient:
    def __init__(self, cluster):
        self.cluster = cluster

    def wait_for_workers(self, n, timeout):
        raise TimeoutError(f"only 0 of {n} workers joined")

    def close(self):
        raise RuntimeError("the scheduler is gone")


@pytest.mark.parametrize("where", ["client", "cluster"])
def test_ssh_pool_stops_what_it_started_when_the_start_fails(monkeypatch, where):
    import distributed
    import distributed.deploy.spec

    from sparsecoded import ssh_pool

    monkeypatch.setattr(_FakeCluster, "made", [])
    monkeypatch.setattr(distributed.deploy.spec, "SpecCluster", _FakeCluster)
    monkeypatch.setattr(distributed, "Client", _FakeClient)
    if where == "client":
        # the first error reaches the caller although closing the client fails too
        with pytest.raises(TimeoutError, match="only 0 of 2 workers joined"):
            ssh_pool(["a", "b"])
    else:
        # Ctrl-C while the cluster is being built (its workers are starting)
        monkeypatch.setattr(_FakeCluster, "fail", KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            ssh_pool(["a", "b"])
    assert len(_FakeCluster.made) == 1
    assert _FakeCluster.made[0].closed, "the cluster (and its SSH workers) was left running"


@pytest.mark.slow
def test_ssh_pool_across_emulated_hosts(connect_options, rng):
    """Three hosts in their own network namespaces (``.ci/sshd.sh netns-up 3``)."""
    from sparsecoded import ssh_pool
    from sparsecoded.stragglers import FixedDelay

    hosts = os.environ.get("SSHD_NETNS_HOSTS", "").split()
    if not hosts:
        pytest.skip("no emulated hosts: run `bash .ci/sshd.sh netns-up 3` and export its output")
    opts = {**connect_options, "port": 22}
    with ssh_pool(hosts, connect_options=opts, python=sys.executable) as p:
        # the scheduler listens on this machine's side of the hosts' bridge
        assert p.client.scheduler.address.startswith("tcp://10.214.0.1:")
        # each worker runs inside its namespace, at that host's address
        addrs = p.client.sync(p._identity)
        assert [addrs[i].split("//")[1].split(":")[0] for i in range(len(hosts))] == hosts
        blocks = [sp.random_array((30, 20), density=0.2, format="csr", rng=rng) for _ in hosts]
        x = rng.standard_normal(20)
        p.place("A", [[b] for b in blocks])
        actions = FixedDelay(workers=[0], seconds=30.0).plan(len(hosts), 0)
        t0 = time.perf_counter()
        rr = p.run("A", "matvec", x, enough=lambda r: len(r) == len(hosts) - 1, actions=actions)
        assert time.perf_counter() - t0 < 10
        assert rr.cancelled == [0]
        for w in rr.answered:
            _want = blocks[w] @ x
            np.testing.assert_allclose(
                rr.results[(w, 0)], _want, rtol=1e-12, atol=1e-12 * np.abs(_want).max()
            )
