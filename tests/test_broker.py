"""The embedded Kafka broker: lifecycle, topics, round trip, errors, no orphans."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fixtures.broker import TEST_TOPICS, kafka_for_tests
from resilience.tcpproxy import TcpProxy

from prevent.platform.broker import BrokerError, EmbeddedBroker, ensure_topics, wait_for_kafka
from prevent.platform.netutil import free_port

REPO = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie counts as dead: in a container, PID 1 may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _wait_dead(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[str]]]:
    """Child Python processes of a test. Killed afterwards, even if the test failed; their
    pipes closed (left to the garbage collector, each was a ResourceWarning)."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _python(code: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_start_stop_leaves_no_process() -> None:
    with EmbeddedBroker(topics={}) as broker:
        pid = broker.pid
        port = broker.port
        assert pid is not None and _alive(pid)
        assert broker.bootstrap == broker.advertised_bootstrap == f"127.0.0.1:{port}"
        assert _port_open(port)
    assert not _alive(pid)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not _port_open(port)
    broker.stop()  # idempotent


async def test_topics_have_requested_partitions() -> None:
    topics = {"test.three": 3, "test.one": 1, "test.five": 5}
    async with EmbeddedBroker(topics=topics) as broker:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        try:
            assert set(topics) <= await consumer.topics()
            for name, count in topics.items():
                assert consumer.partitions_for_topic(name) == set(range(count))
        finally:
            await consumer.stop()
        # Creating again is a no-op, not an error.
        await ensure_topics(broker.bootstrap, topics)
        await ensure_topics(broker.bootstrap, {**topics, "test.late": 2})
        await wait_for_kafka(broker.bootstrap, 2.0)


async def test_produce_consume_round_trip_with_headers() -> None:
    topic = "test.roundtrip"
    async with EmbeddedBroker(topics={topic: 3}) as broker:
        # acks="all" without idempotence: Tansu has no InitProducerId.
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                                    enable_idempotence=False)
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, group_id=f"g-{uuid.uuid4().hex}",
            auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=20,
            # Tansu holds a new member's JoinGroup for ~session_timeout/2 (min 1 s).
            session_timeout_ms=2000, heartbeat_interval_ms=500,
        )
        await producer.start()
        await consumer.start()
        try:
            headers = [("ce_id", b"abc"), ("content-type", b"application/json")]
            await producer.send_and_wait(topic, b'{"x": 1}', key=b"k1", headers=headers)
            message = await consumer.getone()
            await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()
    assert message.value == b'{"x": 1}'
    assert message.key == b"k1"
    assert list(message.headers) == headers


async def test_advertised_port_sends_clients_there() -> None:
    """Clients bootstrap on the listener, then connect to the advertised port (here a proxy)."""
    port, topics = free_port(), {"test.advertised": 1}
    async with (TcpProxy("127.0.0.1", port) as proxy,
                EmbeddedBroker(topics=topics, port=port, advertised_port=proxy.port) as broker):
        assert broker.bootstrap == f"127.0.0.1:{port}"
        assert broker.advertised_bootstrap == f"127.0.0.1:{proxy.port}"
        before = proxy.connections  # creating the topics at start already went through the proxy
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("test.advertised", b"x")
            assert [b.port for b in producer.client.cluster.brokers()] == [proxy.port]
        finally:
            await producer.stop()
        assert proxy.connections > before


def test_port_clash_names_the_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(BrokerError, match=rf"\b{port}\b.*in use"):
            EmbeddedBroker(topics={}, port=port).start()


def test_missing_binary() -> None:
    with pytest.raises(BrokerError, match=r"binary not found.*PREVENT_TANSU_BIN"):
        EmbeddedBroker(topics={}, binary="/nonexistent").start()


def test_missing_binary_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREVENT_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="binary not found"):
        EmbeddedBroker(topics={}).start()


def test_early_exit_reports_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'boom: cannot start'\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerError, match=r"exited early with code 3.*boom: cannot start"):
        EmbeddedBroker(topics={}, binary=str(fake), startup_timeout=5).start()


def test_startup_timeout(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"  # runs but never listens
    fake.write_text("#!/bin/sh\necho 'stuck'\nexec sleep 30\n")
    fake.chmod(0o755)
    broker = EmbeddedBroker(topics={}, binary=str(fake), startup_timeout=0.5)
    with pytest.raises(BrokerError, match=r"did not become ready.*0\.5s.*stuck"):
        broker.start()
    assert broker.pid is None  # the failed start stopped the process


async def test_wait_for_kafka_times_out() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(BrokerError, match="did not answer"):
            await wait_for_kafka(f"127.0.0.1:{port}", 0.3)


def test_broker_dies_with_sigkilled_parent(spawned: list[subprocess.Popen[str]]) -> None:
    parent = _python("""
        import time
        from prevent.platform.broker import EmbeddedBroker
        broker = EmbeddedBroker(topics={"t": 1}).start()
        print(broker.pid, broker.log_path.parent, flush=True)
        time.sleep(60)
    """)
    spawned.append(parent)
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line.split()[:1] and line.split()[0].isdigit(), parent.stderr and parent.stderr.read()
    broker_pid, log_dir = int(line.split()[0]), Path(line.split()[1])
    try:
        assert _alive(broker_pid)
        parent.send_signal(signal.SIGKILL)  # no atexit, no finally: only PDEATHSIG is left
        parent.wait(5)
        assert _wait_dead(broker_pid, 5.0), f"Tansu pid {broker_pid} outlived its parent"
    finally:
        if _alive(broker_pid):
            os.kill(broker_pid, signal.SIGKILL)
        shutil.rmtree(log_dir, ignore_errors=True)  # its owner died before it could clean up


def test_atexit_stops_a_broker_left_running(spawned: list[subprocess.Popen[str]]) -> None:
    proc = _python("""
        from prevent.platform.broker import EmbeddedBroker
        broker = EmbeddedBroker(topics={}).start()
        print(broker.pid, flush=True)
    """)  # exits normally without stop()
    spawned.append(proc)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert _wait_dead(int(out.split()[0]), 2.0)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_foreground_stops_on_signal(
    spawned: list[subprocess.Popen[str]], sig: signal.Signals
) -> None:
    proc = _python("""
        from prevent.platform.broker import run_foreground
        run_foreground({"t": 1})
    """)
    spawned.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "Kafka broker (Tansu) listening on 127.0.0.1:" in line, line
    port = int(line.split("127.0.0.1:")[1].split()[0])
    assert _port_open(port)
    proc.send_signal(sig)
    assert proc.wait(10) == 0
    assert not _port_open(port)


def test_session_topics_exist() -> None:
    """What the session fixture ``kafka_bootstrap`` provides: every prevent topic."""
    with kafka_for_tests() as bootstrap:
        partitions = _partition_counts(bootstrap, list(TEST_TOPICS))
    assert partitions == TEST_TOPICS
    assert partitions["prevent.incidents.v1"] == 3
    assert partitions["prevent.playbooks.v1"] == 1


def _partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    from prevent.platform.broker import run_sync

    async def counts() -> dict[str, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            await consumer.topics()
            return {n: len(consumer.partitions_for_topic(n) or ()) for n in names}
        finally:
            await consumer.stop()

    return run_sync(counts)


# --------------------------------------------------------------------------- any engine (issue 24)


async def test_a_comma_separated_bootstrap_works_for_every_client(kafka_engine) -> None:
    """``PREVENT_KAFKA_BOOTSTRAP=host1:port,host2:port`` as docs/OPERATIONS.md documents it,
    with the first node down: FastStream's broker, the admin client, the lag reader, the
    dead-letter reader and the readiness check all reach the cluster through the second."""
    from prevent.platform.broker import broker_features, split_bootstrap
    from prevent.platform.config import Settings
    from prevent.platform.deadletters import read_all
    from prevent.platform.messaging import make_broker
    from prevent.web.lag import consumer_lag

    bootstrap = f"127.0.0.1:{free_port()}, {kafka_engine.bootstrap}"
    assert split_bootstrap(bootstrap) == [bootstrap.split(",")[0], kafka_engine.bootstrap]
    topic = f"test.bootstrap.{uuid.uuid4().hex[:8]}"
    await wait_for_kafka(bootstrap, 20)
    await ensure_topics(bootstrap, {topic: 1})
    broker = make_broker(Settings(kafka_bootstrap=bootstrap), bootstrap, client_id="test-list")
    await broker.start()
    try:
        await broker.publish(b'{"x": 1}', topic=topic, key=b"k")
    finally:
        await broker.stop()
    assert (await broker_features(bootstrap)).engine == kafka_engine.name
    assert await consumer_lag(bootstrap, [f"g-{topic}"]) == {}
    assert isinstance(await read_all(bootstrap), list)


async def test_kafka_features_decide_the_defaults(kafka_engine) -> None:
    """Idempotent producer where the cluster grants producer ids; fetch wait and session
    timeout by engine, never below the cluster's group.min.session.timeout.ms; what the
    operator set is kept."""
    from prevent.platform.broker import broker_features
    from prevent.platform.config import Settings
    from prevent.platform.messaging import consumer_options, defaults_for, make_broker, settings_for_broker

    features = await broker_features(kafka_engine.bootstrap)
    resolved, _ = await settings_for_broker(Settings(kafka_bootstrap=kafka_engine.bootstrap),
                                            kafka_engine.bootstrap)
    if kafka_engine.is_kafka:
        assert features.idempotence and features.min_session_timeout_ms == 6000
        assert resolved.kafka_idempotent_producer is True
        assert resolved.kafka_fetch_max_wait_ms == 500
        assert resolved.kafka_session_timeout_ms == 10_000
    else:
        assert not features.idempotence
        assert (resolved.kafka_idempotent_producer, resolved.kafka_fetch_max_wait_ms,
                resolved.kafka_session_timeout_ms) == (False, 50, 2000)
    opts = consumer_options(resolved, "g")
    assert opts["session_timeout_ms"] == resolved.kafka_session_timeout_ms
    assert opts["fetch_max_wait_ms"] == resolved.kafka_fetch_max_wait_ms
    explicit = defaults_for(Settings(kafka_fetch_max_wait_ms=20, kafka_session_timeout_ms=2000,
                                     kafka_idempotent_producer=False), features)
    assert explicit.kafka_fetch_max_wait_ms == 20 and explicit.kafka_idempotent_producer is False
    assert explicit.kafka_session_timeout_ms == max(2000, features.min_session_timeout_ms or 0)
    # The producer the services build with these settings publishes (idempotently on Kafka).
    topic = f"test.idem.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_engine.bootstrap, {topic: 1})
    broker = make_broker(resolved, kafka_engine.bootstrap, client_id="test-idem")
    await broker.start()
    try:
        await broker.publish(b"{}", topic=topic, key=b"k")
    finally:
        await broker.stop()


async def test_topics_are_created_with_explicit_configurations(apache_kafka) -> None:
    """Every topic gets its max.message.bytes, retention.ms and min.insync.replicas at
    creation (read back from Apache Kafka), not the cluster's defaults."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from prevent.contracts import DEADLETTER, INCIDENTS
    from prevent.platform.config import Settings
    from prevent.platform.runtime import topic_configs

    bootstrap = apache_kafka.bootstrap
    wanted = topic_configs(Settings())
    assert wanted[DEADLETTER.name]["max.message.bytes"] == str(2 * 1024 * 1024)
    assert wanted[INCIDENTS.name]["max.message.bytes"] == str(8 * 1024 * 1024)
    suffix = uuid.uuid4().hex[:8]
    names = {f"test.cfg.dl.{suffix}": wanted[DEADLETTER.name],
             f"test.cfg.in.{suffix}": wanted[INCIDENTS.name]}
    await ensure_topics(bootstrap, {n: 1 for n in names}, configs=names)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    finally:
        await admin.close()
    got = {res[3]: {e[0]: e[1] for e in res[4]} for r in responses for res in r.resources}
    for name, config in names.items():
        for key, value in config.items():
            assert got[name][key] == value, (name, key)
        assert got[name]["min.insync.replicas"] == "1"  # min(2, replication factor 1)


def test_kafka_cluster_script_kills_restarts_and_stops_nodes_by_pid(tmp_path: Path) -> None:
    """scripts/kafka-cluster on 3 nodes: replication 3, min.insync.replicas 2; SIGKILL of the
    node named first in the bootstrap list loses no acknowledged record and stops no client;
    the node restarts and rejoins; stop leaves no JVM."""
    from fixtures.kafka import start_cluster

    from prevent.platform.broker import run_sync

    cluster = start_cluster(tmp_path / "k3", 3)
    try:
        pids = {n.id: n.pid for n in cluster.nodes}
        assert cluster.running() == [1, 2, 3] and all(_alive(p) for p in pids.values())
        status = subprocess.run([str(REPO / "scripts" / "kafka-cluster"), "--dir", str(tmp_path / "k3"),
                                 "status"], capture_output=True, text=True, check=True).stdout
        assert all(f"pid {p}" in status for p in pids.values())
        topic = f"test.k3.{uuid.uuid4().hex[:8]}"
        run_sync(lambda: ensure_topics(cluster.bootstrap, {topic: 3}))

        async def produce(values: range) -> None:
            producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all",
                                        request_timeout_ms=30_000)
            await producer.start()
            try:
                for n in values:
                    await producer.send_and_wait(topic, str(n).encode(), key=str(n).encode())
            finally:
                await producer.stop()

        async def consume(expected: int) -> list[int]:
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=cluster.bootstrap, group_id=None,
                                        auto_offset_reset="earliest")
            await consumer.start()
            seen: list[int] = []
            try:
                async with asyncio.timeout(60):
                    while len(seen) < expected:
                        for records in (await consumer.getmany(timeout_ms=500)).values():
                            seen += [int(r.value) for r in records]
            finally:
                await consumer.stop()
            return sorted(seen)

        run_sync(lambda: produce(range(0, 50)))
        cluster.kill(1)
        assert _wait_dead(pids[1], 10) and _alive(pids[2]) and _alive(pids[3])
        assert cluster.running() == [2, 3]
        run_sync(lambda: produce(range(50, 100)))  # min.insync.replicas=2 still met
        assert run_sync(lambda: consume(100)) == list(range(100))
        cluster.restart(1)
        assert cluster.running() == [1, 2, 3] and cluster.node(1).pid != pids[1]
    finally:
        cluster.stop()
    assert cluster.running() == []
    assert not any(_alive(p) for p in pids.values())


def test_compose_kafka_matches_the_tested_cluster() -> None:
    """docker-compose.yml's Kafka runs the version and the broker settings that
    scripts/kafka-cluster gives the 1-node cluster the suite runs on."""
    import yaml
    from fixtures.kafka import kafka_cluster_module

    kc = kafka_cluster_module()
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{kc.KAFKA_VERSION}"
    env = {k.removeprefix("KAFKA_").lower().replace("_", "."): str(v)
           for k, v in kafka["environment"].items()}
    tested = kc.broker_properties(1)
    for key in ("process.roles", "auto.create.topics.enable", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
                "min.insync.replicas", "group.initial.rebalance.delay.ms"):
        assert env[key] == tested[key], key
    assert "message.max.bytes" not in env and "message.max.bytes" not in tested
    assert "PREVENT_KAFKA_IDEMPOTENT_PRODUCER" not in compose["x-prevent"]["environment"]


def test_kafka_cluster_ids_are_never_taken_for_an_option() -> None:
    """kafka-storage's parser reads an id starting with "-" as an option (formatting failed
    about once in 32 starts)."""
    from fixtures.kafka import kafka_cluster_module

    ids = [kafka_cluster_module()._cluster_id() for _ in range(2000)]
    assert all(i[0].isalnum() and len(i) == 22 for i in ids) and len(set(ids)) == 2000
