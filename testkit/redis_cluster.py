"""A private Redis Cluster for tests and benches: N masters (`redis-server --cluster-enabled yes`),
each with R replicas, on free loopback ports, each in its own directory, joined by
`redis-cli --cluster create`.

    with private_cluster() as cluster:     # cluster.url, cluster.ports, cluster.restart(i)
        ...
    with private_cluster(3, replicas=1) as cluster:
        cluster.failover(1)                # the first master's replica takes over (CLUSTER FAILOVER)

Every process it starts is stopped when the block ends, also when starting failed half-way.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from runtime.redis import RetryingCluster, cluster_options
from testkit.redis_server import RedisServer

NODE_TIMEOUT_MS = 5_000
"""Longer than a master's restart in the tests: the others never mark it failed (which would
take the whole cluster down). A restarted master itself refuses commands (CLUSTERDOWN) for
about this long before it rejoins: clients must retry that long (runtime/redis.py: ~17 s)."""


def cluster_port() -> int:
    """A loopback port free right now whose cluster bus port (+10000) is free too; at most
    55535, since the bus port must exist."""
    while True:
        port = random.randint(20_000, 45_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


class RedisClusterServers:
    """`masters` cluster nodes in `workdir`, each with `replicas` replicas; `appendonly` when a
    test restarts one. The first `masters` nodes start as the masters."""

    def __init__(self, workdir: str, *, masters: int = 3, replicas: int = 0, appendonly: bool = False) -> None:
        if shutil.which("redis-cli") is None:
            raise RuntimeError("redis-cli not found")
        self.masters = masters
        self.replicas = replicas
        self.nodes: list[RedisServer] = []
        for i in range(masters * (1 + replicas)):
            folder = Path(workdir) / f"node{i}"
            folder.mkdir()
            self.nodes.append(
                RedisServer(
                    str(folder),
                    appendonly=appendonly,
                    port=cluster_port(),
                    extra=(
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        str(NODE_TIMEOUT_MS),
                    ),
                )
            )

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """A URL of one node (a cluster client finds the others from it)."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout_s: float = 30.0) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )
        self.wait_ok(timeout_s)
        return self

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every node reports `cluster_state:ok` and knows every master."""
        deadline = time.monotonic() + timeout_s
        for port in self.ports:
            client = redis.Redis(port=port, socket_connect_timeout=0.5)
            try:
                while True:
                    with contextlib.suppress(redis.RedisError):
                        info = client.cluster("info")
                        if info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == len(
                            self.ports
                        ):
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"cluster node {port} is not ok")
                    time.sleep(0.05)
            finally:
                client.close()

    def master_of_slot(self, slot: int) -> int:
        """The port of the master serving `slot`."""
        client = redis.Redis(port=self.ports[0])
        try:
            for start, end, master, *_ in client.cluster("slots"):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        finally:
            client.close()
        raise LookupError(f"slot {slot} is not served")

    def replica_ready(self, index: int, timeout_s: float = 30.0) -> int:
        """The port of a replica of master `index` that can take over: its master knows it (by
        gossip, which just after the cluster formed may take a while) and its replication link
        is up (a manual failover needs the master to answer; before the first sync it times out
        and changes nothing)."""
        master = redis.Redis(port=self.ports[index])
        deadline = time.monotonic() + timeout_s
        try:
            node_id = master.cluster("myid")
            while not (lines := master.cluster("replicas", node_id)) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            master.close()
        if not lines:
            raise LookupError(f"master {self.ports[index]} has no replica")
        # redis-py parses the reply like CLUSTER NODES: {"host:port@bus": {...}}; raw, a line each
        first = next(iter(lines)) if isinstance(lines, dict) else lines[0].split()[1]
        first = first.decode() if isinstance(first, bytes) else first
        port = int(first.split("@")[0].rsplit(":", 1)[1])
        replica = redis.Redis(port=port)
        try:
            while replica.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replica {port} is not in sync with its master")
                time.sleep(0.05)
        finally:
            replica.close()
        return port

    def failover(self, index: int, timeout_s: float = 30.0) -> int:
        """A replica of master `index` (its port, in `ports`) takes over with CLUSTER FAILOVER
        (the manual kind: the master stops taking writes until the replica has caught up, then
        they swap). Returns the new master's port once every node agrees again."""
        port = self.replica_ready(index, timeout_s)
        replica = redis.Redis(port=port)
        try:
            replica.cluster("failover")
            deadline = time.monotonic() + timeout_s
            while replica.role()[0] not in (b"master", "master"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replica {port} did not take over")
                time.sleep(0.05)
        finally:
            replica.close()
        self.wait_ok(timeout_s)
        return port

    def restart(self, index: int) -> None:
        """SHUTDOWN one master (it writes its AOF) and start it again on its port."""
        node = self.nodes[index]
        node.shutdown()
        node.start()
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def private_cluster(masters: int = 3, *, replicas: int = 0, appendonly: bool = False) -> Iterator[RedisClusterServers]:
    """A fresh cluster of `masters` masters (each with `replicas` replicas) that nothing else can
    touch, stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="redis-cluster-") as workdir:
        cluster = RedisClusterServers(workdir, masters=masters, replicas=replicas, appendonly=appendonly)
        try:
            yield cluster.start()
        finally:
            cluster.stop()


_CLUSTER_URLS: set[str] = set()


def register_cluster_url(url: str) -> None:
    """Mark `url` as a cluster node's: settings and worker processes built for it run in cluster mode."""
    _CLUSTER_URLS.add(url.rstrip("/"))


def is_cluster_url(url: str) -> bool:
    """Whether `url` names a node of a cluster started (or named) for these tests."""
    return url.rstrip("/") in _CLUSTER_URLS


class ClusterTestClient(RetryingCluster):
    """The tests' client on a cluster: `connect`'s cluster client whose KEYS asks every master
    (redis-py sends it to one node), so a test reads what it reads on one node."""

    async def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        return await super().keys(pattern, target_nodes=RedisCluster.PRIMARIES, **kwargs)


async def redis_client(url: str) -> Redis:
    """A bytes-mode client on `url` for a test to look at what was stored: a plain one, or on a
    registered cluster a ClusterTestClient, ready (see runtime.redis.transaction)."""
    if not is_cluster_url(url):
        return Redis.from_url(url)
    client = ClusterTestClient.from_url(url, **cluster_options())
    await client.initialize()
    return cast(Redis, client)


async def flush_all(url: str) -> None:
    """Empty the database behind `url`: every master of a cluster, or the one database."""
    client = await redis_client(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
