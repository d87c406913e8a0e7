"""The rules consumer: incidents in, proposed or auto-confirmed alerts out.

Thin by design: decode and validate each record, have it prepared (``prevent.rules.pool``),
call the domain (``prevent.rules.stage``), commit. Incidents are taken in batches (one database
transaction per batch, one offset commit per batch) because a global event makes every
outlet publish at once; a batch's effects are durable in the database, with their events in
the outbox, before its offsets are committed.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage

from prevent.classification import Classifier
from prevent.classification.lexicon import Lexicon
from prevent.classification.semantic import SemanticSpec, spec_for
from prevent.contracts import INCIDENTS, PLAYBOOKS, GlobalIncident, PlaybooksChanged
from prevent.platform.messaging import (
    PermanentError,
    classify_error,
    consumer_options,
    dead_letter,
    decode_record,
    retry_transient,
)
from prevent.platform.runtime import ServiceContext
from prevent.rules.playbooks import diaspora_versions as diaspora
from prevent.rules.pool import Preparation, Preparer
from prevent.rules.stage import Outcome, Prepared, process_batch

if TYPE_CHECKING:
    from faststream.kafka.subscriber.usecase import BatchSubscriber, DefaultSubscriber

log = logging.getLogger("prevent.rules.stage")
GROUP = "prevent-rules"
DRAIN_SECONDS = 30.0
BATCH_SIZE = 5000  # per-batch reads and writes (clusters, keys, alerts) are amortised over more incidents


class RulesConsumer:
    """Batches are pipelined: while batch N is prepared (classified, encoded) in the worker,
    batch N-1 is written here. Batch N-1's offsets are committed once its transaction has
    committed, so a batch is never committed before its effects are durable; one that is
    lost with the process (or a revoked partition) is redelivered, and the stage is
    idempotent. Batches are written strictly in the order they were fetched, and their
    offsets committed in that order too; a stored batch's offset commit (a round trip to the
    broker) overlaps the next batch's write rather than delaying it."""

    def __init__(self, ctx: ServiceContext, classifier: Classifier, preparer: Preparer, *,
                 diaspora_version: int | None = None, files: Lexicon | None = None) -> None:
        self.ctx = ctx
        self.classifier = classifier
        self.preparer = preparer
        self.diaspora_version = diaspora_version  # the stored diaspora map classified with
        # The files' lexicon: a stored map takes the place of the file's.
        self._files: Lexicon = files or classifier.lexicon
        self._rejected: int | None = None  # a stored version that did not validate
        self._previous: asyncio.Task[None] | None = None  # the batch being written
        self._committing: asyncio.Task[None] | None = None  # the last stored batch's offsets
        self._previous_records: tuple[Any, ...] = ()
        self._stopping = False

    async def handle_batch(self, records: tuple[Any, ...], consumer: Any) -> None:
        try:
            valid = await self._decode(records)
            prepared = self.preparer.start([r.value for r, _ in valid], [i for _, i in valid])
        except Exception:
            _rewind(consumer, records)  # nothing of it stored: read it again
            raise
        try:
            await self.settle()
        except Exception:
            # Neither the batch being written nor this one is stored or committed: both
            # are read again, in order.
            prepared.cancel()
            _rewind(consumer, (*self._previous_records, *records))
            self._previous_records = ()
            raise
        self._previous = asyncio.create_task(self._write(records, valid, prepared, consumer))
        self._previous_records = records
        if self._stopping:
            await self.settle()

    async def reload_diaspora(self) -> bool:
        """Classify with the newest stored diaspora map from the next batch on (the batch
        being prepared keeps the map it started with). The classifier is built off the event
        loop; a stored version that does not validate leaves the map in force. Returns
        whether the map changed."""
        stored = await diaspora.in_force(self.ctx.db)
        if stored.version is None or stored.version in (self.diaspora_version, self._rejected):
            return False
        warm = self.ctx.settings.rules_workers == 0  # classified here: compile it all now
        classifier = await asyncio.to_thread(diaspora.classifier_for, self._files, stored,
                                             current=self.classifier, warm=warm)
        if classifier is None:  # it does not validate (logged): the map in force stays
            self._rejected = stored.version
            return False
        if classifier is not self.classifier:
            self.classifier = classifier
            self.preparer.use(classifier)
        self.diaspora_version = stored.version
        log.info("diaspora map v%d in force", stored.version)
        return True

    async def _decode(self, records: tuple[Any, ...]) -> list[tuple[Any, GlobalIncident]]:
        """The valid records; the others go to the dead-letter topic."""
        valid: list[tuple[Any, GlobalIncident]] = []
        for record in records:
            try:
                valid.append((record, decode_record(record, GlobalIncident,
                                                    self.ctx.settings.max_message_bytes)))
            except (PermanentError, ValueError) as exc:
                await dead_letter(self.ctx.broker, record, exc, self.ctx.source)
        return valid

    async def settle(self) -> None:
        """Wait until the batch being written is durable (its error is raised); its offsets
        are then being committed, after those of the batches before it."""
        previous, self._previous = self._previous, None
        if previous is not None:
            await previous
        self._previous_records = ()

    async def drain(self) -> None:
        """On shutdown: finish the batch being written (any later one is written in place),
        but not for ever: a batch waiting out a database outage is left uncommitted."""
        self._stopping = True
        try:
            await asyncio.wait_for(self._settle_and_commit(), DRAIN_SECONDS)
        except Exception as exc:  # noqa: BLE001 - uncommitted, so it will be redelivered
            log.warning("last batch not written before shutdown (it will be redelivered): %r", exc)
        self.preparer.close()

    async def _settle_and_commit(self) -> None:
        await self.settle()
        if self._committing is not None:
            await self._committing

    async def _write(self, records: tuple[Any, ...], valid: list[tuple[Any, GlobalIncident]],
                     prepared: Preparation, consumer: Any) -> None:
        if valid:
            items = list(zip(valid, await prepared.result(), strict=True))
            try:
                outcomes = await retry_transient(lambda: self._process(items), "rules batch")
            except Exception as exc:  # noqa: BLE001 - find the one incident that fails
                log.warning("batch of %d failed (%s); processing one by one", len(items), exc)
                outcomes = await self._one_by_one(items)
            for outcome in outcomes:
                for alert in outcome.alerts:
                    log.info("alert %s %s (playbook %s v%d, severity %d) for incident %s",
                             alert.alert_id, alert.status.value, alert.playbook_id,
                             alert.playbook_version, alert.severity, outcome.incident_id)
            self.ctx.relay.kick()
            self.ctx.db.checkpoint_soon()  # the batch's pages, copied while the next is written
        self._committing = asyncio.create_task(_commit_after(self._committing, consumer, records))

    async def _process(self, batch: list[tuple[tuple[Any, GlobalIncident], Prepared]]) -> list[Outcome]:
        playbooks = self.ctx.playbooks.compiled  # one set for the whole batch
        async with self.ctx.db.transaction() as session:
            return await process_batch(session, [incident for (_, incident), _ in batch],
                                       self.classifier, playbooks, prepared=[p for _, p in batch])

    async def _one_by_one(self, batch: list[tuple[tuple[Any, GlobalIncident], Prepared]]
                          ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for item in batch:
            (record, incident), _ = item
            try:
                outcomes += await retry_transient(partial(self._process, [item]), "rules incident")
            except Exception as exc:
                if classify_error(exc) == "transient":
                    raise
                log.error("incident %s cannot be processed: %s", incident.incident_id, exc)
                await dead_letter(self.ctx.broker, record, exc, self.ctx.source)
        return outcomes


def _next_offsets(records: tuple[Any, ...]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
    return offsets


async def _commit_after(earlier: asyncio.Task[None] | None, consumer: Any,
                        records: tuple[Any, ...]) -> None:
    """Commit a stored batch's offsets once the batch before it has committed its own."""
    if earlier is not None:
        await earlier
    await _commit(consumer, records)


async def _commit(consumer: Any, records: tuple[Any, ...]) -> None:
    """Commit exactly this batch's offsets. A commit that fails (the partition moved to
    another replica, the broker is away) only means redelivery, which changes nothing."""
    if not records:
        return
    try:
        await consumer.commit(_next_offsets(records))
    except Exception as exc:  # noqa: BLE001
        log.warning("offsets of a stored batch not committed (it may be redelivered): %s", exc)


def _rewind(consumer: Any, records: tuple[Any, ...]) -> None:
    """Read again from the first record not known to be stored, on every partition."""
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        first[tp] = min(first.get(tp, r.offset), r.offset)
    for tp, offset in first.items():
        try:
            consumer.seek(tp, offset)
        except Exception as exc:  # noqa: BLE001 - a revoked partition is read by its new owner
            log.warning("cannot rewind %s to %d: %s", tp, offset, exc)


def semantic_spec(settings: Any, classifier: Classifier) -> SemanticSpec | None:
    """The semantic layer's spec for the preparation workers, when ``PREVENT_SEMANTIC`` is on
    and the model is installed (nothing of the model is loaded in this process)."""
    if not settings.semantic:
        return None
    known = {c.id for c in classifier.lexicon.communities.communities}
    return spec_for(True, settings.semantic_model, settings.playbooks_dir, known, classifier.languages,
                    settings.semantic_threads)


def register(ctx: ServiceContext, classifier: Classifier, *, diaspora_version: int | None = None,
             files: Lexicon | None = None) -> RulesConsumer:
    """``classifier``: built from the files (lexicon ``files``) with the stored diaspora map
    (version ``diaspora_version``) in place of the file's, when one is stored."""
    preparer = Preparer(classifier, workers=ctx.settings.rules_workers,
                        semantic=semantic_spec(ctx.settings, classifier))
    consumer = RulesConsumer(ctx, classifier, preparer, diaspora_version=diaspora_version,
                             files=files)
    ctx.on_stop.append(consumer.drain)
    # The consumer commits each batch's offsets itself, after its transaction (see above).
    options = consumer_options(ctx.settings, GROUP) | {"ack_policy": AckPolicy.MANUAL}
    # A batch subscriber that finds nothing within ``batch_timeout_ms`` sleeps that long
    # before it asks again (FastStream): at its default of 200 ms, the first report of an
    # event reaching an idle consumer could wait that long before it was even fetched.
    options["batch_timeout_ms"] = ctx.settings.kafka_fetch_max_wait_ms

    # The subscribers are typed here: keyword arguments from a dict leave FastStream's overloads
    # undecided (Any).
    incidents: BatchSubscriber = ctx.broker.subscriber(INCIDENTS.name, batch=True,
                                                       max_records=BATCH_SIZE, **options)

    @incidents
    async def on_incidents(message: KafkaMessage) -> None:
        raw = message.raw_message
        await consumer.handle_batch(raw if isinstance(raw, tuple) else (raw,), message.consumer)

    # Every instance must see every playbook change: no group, start at the end.
    playbook_changes: DefaultSubscriber = ctx.broker.subscriber(
        PLAYBOOKS.name, **consumer_options(ctx.settings, None))

    @playbook_changes
    async def on_playbooks(event: PlaybooksChanged) -> None:
        log.info("playbooks changed by %s: %s%s", event.actor, event.versions,
                 f" (diaspora map v{event.diaspora_version})" if event.diaspora_version else "")
        await ctx.playbooks.reload(ctx.db)
        await consumer.reload_diaspora()

    return consumer
