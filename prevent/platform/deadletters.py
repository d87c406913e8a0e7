"""Dead letters: list what the consumers set aside on ``prevent.deadletter.v1``, and replay
chosen records to the topic they came from.

A dead letter is the original record (key and value unchanged) with headers naming its
origin (``x-origin-topic``, ``x-origin-partition``, ``x-origin-offset``) and the error
(``x-error``, ``x-error-kind``, ``x-dead-lettered-by``, ``x-dead-lettered-at``). Listing reads
the topic from the beginning with a group-less consumer, so it commits nothing and never
disturbs a consumer group. Replay publishes the original key and value to the origin topic
with the original headers (CloudEvents) but without the ``x-*`` ones; the consumers treat it
as any other message, and their idempotency records make a replay of something already
processed harmless. Fix the cause first (a playbook, a schema, a size limit), then replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from prevent.contracts import DEADLETTER
from prevent.platform.broker import split_bootstrap

MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class DeadLetter:
    partition: int  # where the dead letter itself is
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str:
        for k, v in self.headers:
            if k == name:
                return v.decode(errors="replace")
        return ""

    @property
    def truncated(self) -> bool:
        """Only the start of the original value is kept (it was too large to dead-letter)."""
        return self.header("x-truncated") == "true"

    @property
    def origin_topic(self) -> str:
        return self.header("x-origin-topic")

    @property
    def origin_partition(self) -> int | None:
        value = self.header("x-origin-partition")
        return int(value) if value.lstrip("-").isdigit() else None

    @property
    def origin_offset(self) -> int | None:
        value = self.header("x-origin-offset")
        return int(value) if value.lstrip("-").isdigit() else None

    def summary(self) -> dict[str, object]:
        return {"offset": self.offset, "origin_topic": self.origin_topic,
                "origin_partition": self.origin_partition, "origin_offset": self.origin_offset,
                "key": self.key.decode(errors="replace") if self.key is not None else None,
                "bytes": len(self.value), "truncated": self.truncated,
                "original_bytes": int(self.header("x-original-bytes") or len(self.value)),
                "error_kind": self.header("x-error-kind"),
                "error": self.header("x-error"), "by": self.header("x-dead-lettered-by"),
                "at": self.header("x-dead-lettered-at")}


async def read_all(bootstrap: str, *, topic: str = DEADLETTER.name, limit_s: float = 10.0
                   ) -> list[DeadLetter]:
    """Every record on the dead-letter topic now (up to its end offsets at the start)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=split_bootstrap(bootstrap), group_id=None,
                                enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100,
                                max_partition_fetch_bytes=MAX_BYTES, fetch_max_bytes=MAX_BYTES)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            await consumer._client.force_metadata_update()  # first use of the topic
            partitions = [TopicPartition(topic, p)
                          for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found: list[DeadLetter] = []
        deadline = asyncio.get_running_loop().time() + limit_s
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {limit_s:g}s")
            for tp, records in (await consumer.getmany(*partitions, timeout_ms=500)).items():
                found += [DeadLetter(tp.partition, r.offset, r.key, r.value or b"",
                                     tuple(r.headers or ())) for r in records if r.offset < end[tp]]
        return sorted(found, key=lambda d: (d.partition, d.offset))
    finally:
        await consumer.stop()


def select(letters: Iterable[DeadLetter], *, origin_topic: str | None = None,
           offsets: Sequence[int] = (), partition: int | None = None) -> list[DeadLetter]:
    """The dead letters from ``origin_topic`` (any, if None) at the given origin offsets (any,
    if empty), in the given origin partition (any, if None: offsets repeat across partitions)."""
    return [d for d in letters if (origin_topic is None or d.origin_topic == origin_topic)
            and (not offsets or d.origin_offset in offsets)
            and (partition is None or d.origin_partition == partition)]


def replay_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in letter.headers if not k.startswith("x-")]


async def replay(bootstrap: str, letters: Sequence[DeadLetter]) -> int:
    """Publish each letter's original key and value to its origin topic (x-* headers dropped);
    returns how many were published (all acknowledged)."""
    missing = [d.offset for d in letters if not d.origin_topic]
    if missing:
        raise ValueError(f"dead letters without x-origin-topic at offsets {missing}")
    cut = [d.offset for d in letters if d.truncated]
    if cut:
        raise ValueError(f"dead letters at offsets {cut} hold only the start of the original "
                         "record (x-truncated); replay it from its origin or its producer")
    producer = AIOKafkaProducer(bootstrap_servers=split_bootstrap(bootstrap), acks="all",
                                max_request_size=MAX_BYTES)
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(letter.origin_topic, letter.value, key=letter.key,
                                         headers=replay_headers(letter))
    finally:
        await producer.stop()
    return len(letters)


__all__ = ["DeadLetter", "read_all", "replay", "select"]
