"""Consumer lag for ``/metrics``: for each consumer group this process runs, the committed
offset against the end offset of every partition it has committed on (Prometheus gauge
``prevent_consumer_lag{group,topic,partition}``).

Only the groups of the process serving the console are reported (in `prevent up`, all of
them); a console-only replica has no broker and reports none. Group-less readers (the
playbook announcements) commit nothing and have no lag to report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from prevent.platform.broker import split_bootstrap

log = logging.getLogger("prevent.web.lag")
NAME = "prevent_consumer_lag"


async def consumer_lag(bootstrap: str, groups: Iterable[str], timeout_s: float = 2.0
                       ) -> dict[tuple[str, str, int], int]:
    """Each group's committed offsets (OffsetFetch through a group-bound consumer that never
    joins the group) against the end offsets of those partitions; the partitions come from
    the cluster's metadata as the admin client describes it.

    (``AIOKafkaConsumer.topics()`` fills a metadata object of its own, so a consumer's
    ``partitions_for_topic()`` stays ``None`` for topics it has not subscribed to: on Apache
    Kafka that reported no lag at all. The admin client's own OffsetFetch is not used
    because the embedded broker answers its version with a malformed response.)"""
    servers = split_bootstrap(bootstrap)
    timeout_ms = int(timeout_s * 1000)
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        described = await admin.describe_topics()
    finally:
        await admin.close()
    partitions = sorted(TopicPartition(d["topic"], p["partition"]) for d in described
                        if d["error_code"] == 0 and not d["topic"].startswith("__")
                        for p in d["partitions"])
    lag: dict[tuple[str, str, int], int] = {}
    if not partitions:
        return lag
    for group in sorted(set(groups)):
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group,
                                    enable_auto_commit=False, request_timeout_ms=timeout_ms)
        try:
            await consumer.start()
            committed = {tp: await consumer.committed(tp) for tp in partitions}
            positions = {tp: offset for tp, offset in committed.items() if offset is not None}
            ends = await consumer.end_offsets(list(positions)) if positions else {}
            for tp, offset in positions.items():
                lag[(group, tp.topic, tp.partition)] = max(0, ends[tp] - offset)
        finally:
            await consumer.stop()
    return lag


class LagCollector(Collector):
    """``prevent_consumer_lag{group,topic,partition}`` from the lag read at scrape time."""

    def __init__(self, lag: dict[tuple[str, str, int], int]) -> None:
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            NAME, "Messages not yet committed by the consumer group (end offset - committed).",
            labels=["group", "topic", "partition"])
        for (group, topic, partition), value in sorted(self.lag.items()):
            family.add_metric([group, topic, str(partition)], value)
        yield family


def prometheus(lag: dict[tuple[str, str, int], int]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LagCollector(lag))
    return generate_latest(registry).decode()


def lag_metrics(bootstrap: str, groups: Callable[[], Iterable[str]], timeout_s: float = 2.0
                ) -> Callable[[], Awaitable[str]]:
    """A ``ConsoleState.lag`` callable; an unreachable broker yields no samples, not an error."""

    async def text() -> str:
        try:
            lag = await asyncio.wait_for(consumer_lag(bootstrap, groups(), timeout_s), timeout_s * 2)
        except Exception as exc:  # noqa: BLE001 - /metrics must answer even when Kafka does not
            log.warning("consumer lag unavailable: %s", exc)
            lag = {}
        return prometheus(lag)
    return text
