"""The embedded Kafka broker: lifecycle, topics, round trip, errors, no orphans."""

from __future__ import annotations

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

from prevent.broker import BrokerError, EmbeddedBroker, ensure_topics, wait_for_kafka
from prevent.netutil import free_port

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
    """Child Python processes of a test. Killed afterwards, even if the test failed."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


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
    with pytest.raises(BrokerError, match="binary not found.*PREVENT_TANSU_BIN"):
        EmbeddedBroker(topics={}, binary="/nonexistent").start()


def test_missing_binary_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREVENT_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="binary not found"):
        EmbeddedBroker(topics={}).start()


def test_early_exit_reports_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'boom: cannot start'\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerError, match="exited early with code 3.*boom: cannot start"):
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
        from prevent.broker import EmbeddedBroker
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
        from prevent.broker import EmbeddedBroker
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
        from prevent.broker import run_foreground
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
    from prevent.broker import run_sync

    async def counts() -> dict[str, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            await consumer.topics()
            return {n: len(consumer.partitions_for_topic(n) or ()) for n in names}
        finally:
            await consumer.stop()

    return run_sync(counts)
