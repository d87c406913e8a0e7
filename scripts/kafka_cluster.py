"""Apache Kafka on loopback for tests, benchmarks and operators: ``scripts/kafka-cluster``.

Stdlib only, so it runs with any Python 3.11. What it does:

* ``fetch``: the broker's jars, once, from Maven Central (``mvn dependency:copy-dependencies``
  on a generated pom for ``org.apache.kafka:kafka_2.13``) into a cache outside the checkout,
  ``$PREVENT_KAFKA_CACHE`` or ``~/.cache/prevent-kafka/<version>/libs``. Nothing else is
  downloaded, and nothing at all once the cache is complete.
* ``start --nodes 1|3``: formats KRaft storage and starts that many combined
  broker+controller JVMs on 127.0.0.1 with free ports (static quorum; replication factor
  min(N, 3); ``min.insync.replicas=2`` on 3 nodes; 512 MB heap each), waits until every node
  answers a Metadata request listing all N brokers, and records each node's pid, ports and
  paths in ``<dir>/cluster.json``.
* ``kill N`` (SIGKILL), ``restart N``, ``stop [N]``: act on a node by the pid recorded for it
  only, after checking that this pid still runs that node's JVM (never by name).

The broker keeps Kafka's default limits (``message.max.bytes`` about 1 MiB) so tests see
what a default-configured cluster does; ``auto.create.topics.enable=false`` as recommended
in docs/OPERATIONS.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

KAFKA_VERSION = os.environ.get("PREVENT_KAFKA_VERSION", "4.1.0")
LOG4J_VERSION = "2.24.3"  # the log4j2 Kafka 4.1 is built with; the slf4j 1.x binding for it
HEAP = os.environ.get("PREVENT_KAFKA_HEAP", "512m")
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


class ClusterError(RuntimeError):
    """A one-line reason the cluster could not be fetched or started."""


# --------------------------------------------------------------------------- jars


def cache_root() -> Path:
    return Path(os.environ.get("PREVENT_KAFKA_CACHE") or Path.home() / ".cache" / "prevent-kafka")


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / version / "libs"


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>prevent.local</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <repositories>
    <repository><id>central</id><url>https://repo.maven.apache.org/maven2</url></repository>
  </repositories>
  <pluginRepositories>
    <pluginRepository><id>central</id><url>https://repo.maven.apache.org/maven2</url></pluginRepository>
  </pluginRepositories>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def fetch(version: str = KAFKA_VERSION, *, quiet: bool = True) -> Path:
    """The directory of the broker's runtime jars, fetched from Maven Central the first time."""
    libs = libs_dir(version)
    marker = libs.parent / ".complete"
    if marker.exists() and any(libs.glob(f"kafka_2.13-{version}.jar")):
        return libs
    if shutil.which("java") is None:
        raise ClusterError("java not found (Apache Kafka needs Java 17)")
    if shutil.which("mvn") is None:
        raise ClusterError("mvn not found (needed once, to fetch Apache Kafka from Maven Central)")
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=work))
    pom = work / "pom.xml"
    pom.write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
    cmd = ["mvn", "-B", "-Dstyle.color=never", "-f", str(pom), f"-Dmaven.repo.local={cache_root() / 'm2'}",
           "dependency:copy-dependencies", "-DincludeScope=runtime",
           f"-DoutputDirectory={staging}"]
    if quiet:
        cmd.insert(1, "-q")
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=900, check=False)
    if proc.returncode != 0 or not any(staging.glob(f"kafka_2.13-{version}.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln) for ln in lines]
        errors = [ln.removeprefix("[ERROR]").strip() for ln in lines if ln.startswith("[ERROR]")]
        reason = next((e for e in errors if e), " | ".join(lines[-3:]) or f"mvn exit {proc.returncode}")
        raise ClusterError(f"could not fetch Apache Kafka {version} from Maven Central: {reason}")
    if libs.exists():
        shutil.rmtree(libs)
    staging.rename(libs)
    marker.write_text(version + "\n")
    return libs


# --------------------------------------------------------------------------- wire check


def _metadata_brokers(port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """One Metadata v4 request (no topics) to 127.0.0.1:port; the brokers it lists."""
    client = b"prevent-kafka-cluster"
    body = struct.pack(">hhih", 3, 4, 1, len(client)) + client + struct.pack(">i?", 0, False)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv(sock, 4))
        data = _recv(sock, size)
    pos = 8  # correlation id, throttle time
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    brokers = []
    for _ in range(count):
        node, hlen = struct.unpack_from(">ih", data, pos)
        pos += 6
        host = data[pos:pos + hlen].decode()
        pos += hlen
        (bport, rlen) = struct.unpack_from(">ih", data, pos)
        pos += 6 + max(rlen, 0)
        brokers.append((node, host, bport))
    return brokers


def _recv(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("connection closed")
        out += chunk
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- the cluster


def broker_properties(nodes: int) -> dict[str, str]:
    """The broker settings of every node of an ``nodes``-node cluster (besides its id,
    listeners and directories); docker-compose.yml uses the same for its one node."""
    rf = str(min(nodes, 3))
    isr = "2" if nodes >= 3 else "1"
    return {
        "process.roles": "broker,controller",
        "num.partitions": "1",
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
    }


@dataclass
class Node:
    id: int
    port: int
    controller_port: int
    config: str
    log: str
    pid: int | None = None


@dataclass
class Cluster:
    directory: str
    nodes: list[Node] = field(default_factory=list)
    cluster_id: str = ""
    version: str = KAFKA_VERSION

    # -- persistence

    @property
    def state_path(self) -> Path:
        return Path(self.directory) / "cluster.json"

    def save(self) -> None:
        self.state_path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Cluster:
        path = Path(directory) / "cluster.json"
        if not path.exists():
            raise ClusterError(f"no cluster recorded in {directory}")
        raw = json.loads(path.read_text())
        raw["nodes"] = [Node(**n) for n in raw["nodes"]]
        return cls(**raw)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def node(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise ClusterError(f"no node {node_id} (nodes: {[n.id for n in self.nodes]})")

    # -- creation

    @classmethod
    def create(cls, directory: str | os.PathLike[str], nodes: int = 1, *,
               overrides: dict[str, str] | None = None) -> Cluster:
        """Write configs and format storage for ``nodes`` nodes (nothing started yet)."""
        if nodes < 1:
            raise ClusterError("at least one node")
        libs = fetch()
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        cluster = cls(str(root), cluster_id=_cluster_id())
        ports = [(_free_port(), _free_port()) for _ in range(nodes)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        log4j = root / "log4j2.properties"
        log4j.write_text(_LOG4J)
        for i, (port, cport) in enumerate(ports):
            node_id = i + 1
            ndir = root / f"node-{node_id}"
            ndir.mkdir(exist_ok=True)
            props = {
                "node.id": str(node_id),
                "controller.quorum.voters": voters,
                "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "log.dirs": str(ndir / "data"),
            } | broker_properties(nodes) | (overrides or {})
            config = ndir / "server.properties"
            config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
            cluster.nodes.append(Node(node_id, port, cport, str(config), str(ndir / "kafka.log")))
            fmt = subprocess.run(
                ["java", "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={log4j}",
                 STORAGE_TOOL, "format", "-t", cluster.cluster_id, "-c", str(config)],
                capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
            if fmt.returncode != 0:
                raise ClusterError(f"formatting node {node_id} failed: "
                                   f"{(fmt.stdout + fmt.stderr).strip()[-500:]}")
        cluster.save()
        return cluster

    # -- processes

    def _spawn(self, node: Node, preexec: Callable[[], None] | None = None) -> None:
        if self._alive(node):
            raise ClusterError(f"node {node.id} already runs as pid {node.pid}")
        libs = libs_dir(self.version)
        cmd = ["java", f"-Xms{HEAP}", f"-Xmx{HEAP}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
               "-Djava.awt.headless=true", "-XX:+ExitOnOutOfMemoryError",
               f"-Dlog4j2.configurationFile={Path(self.directory) / 'log4j2.properties'}",
               "-cp", f"{libs}/*", MAIN_CLASS, node.config]
        with open(node.log, "ab") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=preexec)  # noqa: PLW1509 - only prctl, if given
        _children[proc.pid] = proc
        node.pid = proc.pid
        self.save()

    def start(self, timeout: float = 120.0, preexec: Callable[[], None] | None = None) -> Cluster:
        for node in self.nodes:
            if not self._alive(node):
                self._spawn(node, preexec)
        self.wait_ready(timeout)
        return self

    def restart(self, node_id: int, timeout: float = 120.0,
                preexec: Callable[[], None] | None = None) -> None:
        node = self.node(node_id)
        if self._alive(node):
            self._signal(node, signal.SIGTERM, wait=30.0)
        self._spawn(node, preexec)
        self.wait_ready(timeout)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (its recorded pid only)."""
        node = self.node(node_id)
        if not self._alive(node):
            raise ClusterError(f"node {node_id} is not running")
        self._signal(node, signal.SIGKILL, wait=10.0)

    def stop(self, node_id: int | None = None, *, graceful: bool = True) -> None:
        """SIGTERM (SIGKILL after 20 s) one node, or every node; SIGKILL at once when not
        ``graceful`` (a throw-away test cluster)."""
        for node in [self.node(node_id)] if node_id is not None else self.nodes:
            if self._alive(node):
                self._signal(node, signal.SIGTERM if graceful else signal.SIGKILL, wait=20.0)
            node.pid = None
        self.save()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def running(self) -> list[int]:
        return [n.id for n in self.nodes if self._alive(n)]

    def _alive(self, node: Node) -> bool:
        """True if the recorded pid still runs this node's JVM (a reused pid is not ours)."""
        if node.pid is None:
            return False
        try:
            cmdline = Path(f"/proc/{node.pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{node.pid}/stat").read_text()
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return False
        # An exiting process has released its memory (empty cmdline) but is not gone yet.
        return not cmdline or node.config.encode() in cmdline.split(b"\0")

    def _signal(self, node: Node, sig: signal.Signals, wait: float) -> None:
        assert node.pid is not None  # noqa: S101 - narrows the type: only started nodes are signalled
        pid = node.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while self._alive(node) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if self._alive(node):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self._alive(node):
                _reap(pid)
                time.sleep(0.05)
        _reap(pid, wait=5.0)
        node.pid = None
        self.save()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every running node answers Metadata listing every running broker."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            live = [n for n in self.nodes if self._alive(n)]
            dead = [n for n in self.nodes if n.pid is not None and not self._alive(n)]
            if dead:
                raise ClusterError(f"node {dead[0].id} exited; log tail: {self.log_tail(dead[0].id)}")
            try:
                want = {n.id for n in live}
                if all({b[0] for b in _metadata_brokers(n.port)} >= want for n in live):
                    return
                last = "not every broker registered yet"
            except OSError as exc:
                last = exc
            if time.monotonic() > deadline:
                raise ClusterError(f"Kafka nodes not ready in {timeout:g}s ({last})")
            time.sleep(0.25)

    def log_tail(self, node_id: int, lines: int = 8) -> str:
        path = Path(self.node(node_id).log)
        if not path.exists():
            return ""
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def _cluster_id() -> str:
    """A random Kafka cluster id (16 bytes, URL-safe base64) that does not start with "-",
    which kafka-storage's argument parser would take for an option."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if cid[0].isalnum():
            return cid


# The nodes this process started, by pid, until reaped: a Popen dropped while its JVM runs is
# a ResourceWarning ("subprocess ... is still running"), and its exit status is collected
# through it (nodes started by another run are signalled and watched by pid alone).
_children: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int, wait: float = 0.0) -> None:
    """Collect our own child's exit status (a no-op for a process another run started);
    ``wait``: up to that long, for a node already seen gone (after SIGKILL ``/proc`` may stop
    showing it a moment before the kernel lets its parent collect it)."""
    proc = _children.get(pid)
    if proc is not None:
        if wait:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
        else:
            proc.poll()
        if proc.returncode is not None:
            del _children[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


_LOG4J = """status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.log.name = kafka.log
logger.log.level = WARN
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
"""


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    default_dir = os.environ.get("PREVENT_KAFKA_CLUSTER_DIR") or str(cache_root() / "cluster")
    parser = argparse.ArgumentParser(prog="kafka-cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=default_dir, help=f"cluster directory ({default_dir})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="fetch the jars from Maven Central once; print their directory")
    start = sub.add_parser("start", help="format (if new) and start the nodes; print the bootstrap")
    start.add_argument("--nodes", type=int, default=1, choices=(1, 3))
    for name, text in (("kill", "SIGKILL a node"), ("restart", "restart a node")):
        sub.add_parser(name, help=text).add_argument("node", type=int)
    stop = sub.add_parser("stop", help="stop one node, or all of them")
    stop.add_argument("node", type=int, nargs="?")
    sub.add_parser("status", help="nodes, pids, ports")
    sub.add_parser("bootstrap", help="print the bootstrap list")
    sub.add_parser("destroy", help="stop every node and delete the cluster directory")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch(quiet=False))
            return 0
        if args.command == "start":
            try:
                cluster = Cluster.load(args.dir)
                if len(cluster.nodes) != args.nodes:
                    raise ClusterError(f"{args.dir} holds a {len(cluster.nodes)}-node cluster; "
                                       "destroy it first")
            except ClusterError as exc:
                if "no cluster recorded" not in str(exc):
                    raise
                cluster = Cluster.create(args.dir, args.nodes)
            cluster.start()
            print(cluster.bootstrap)
            return 0
        cluster = Cluster.load(args.dir)
        if args.command == "kill":
            cluster.kill(args.node)
        elif args.command == "restart":
            cluster.restart(args.node)
        elif args.command == "stop":
            cluster.stop(args.node)
        elif args.command == "destroy":
            cluster.destroy()
        elif args.command == "bootstrap":
            print(cluster.bootstrap)
        else:
            for n in cluster.nodes:
                state = f"pid {n.pid}" if cluster._alive(n) else "stopped"
                print(f"node {n.id}: 127.0.0.1:{n.port} (controller {n.controller_port}) {state}")
        return 0
    except ClusterError as exc:
        print(f"kafka-cluster: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
