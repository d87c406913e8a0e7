"""The rules consumer: incidents in, proposed or auto-confirmed alerts out.

Thin by design: decode and validate each record, call the domain
(``prevent.rules``), commit. Incidents are taken in batches (one database
transaction per batch, one offset commit per batch) because a global event makes
every outlet publish at once; a batch's effects are durable in the database, with
their events in the outbox, before the handler returns and the offsets are committed.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream.kafka.annotations import KafkaMessage

from prevent.classification import Classifier
from prevent.contracts import INCIDENTS, PLAYBOOKS, GlobalIncident, PlaybooksChanged
from prevent.messaging import (
    PermanentError,
    classify_error,
    consumer_options,
    dead_letter,
    decode_record,
    retry_transient,
)
from prevent.rules import Outcome, process_batch
from prevent.runtime import ServiceContext

log = logging.getLogger("prevent.rules")
GROUP = "prevent-rules"
BATCH_SIZE = 5000  # per-batch reads and writes (clusters, keys, alerts) are amortised over more incidents


class RulesConsumer:
    def __init__(self, ctx: ServiceContext, classifier: Classifier) -> None:
        self.ctx = ctx
        self.classifier = classifier

    async def handle_records(self, records: tuple[Any, ...]) -> None:
        valid: list[tuple[Any, GlobalIncident]] = []
        for record in records:
            try:
                valid.append((record, decode_record(record, GlobalIncident,
                                                    self.ctx.settings.max_message_bytes)))
            except (PermanentError, ValueError) as exc:
                await dead_letter(self.ctx.broker, record, exc, self.ctx.source)
        if not valid:
            return
        try:
            outcomes = await retry_transient(lambda: self._process(valid), "rules batch")
        except Exception as exc:  # noqa: BLE001 - find the one incident that fails
            log.warning("batch of %d failed (%s); processing one by one", len(valid), exc)
            outcomes = await self._one_by_one(valid)
        for outcome in outcomes:
            for alert in outcome.alerts:
                log.info("alert %s %s (playbook %s v%d, severity %d) for incident %s",
                         alert.alert_id, alert.status.value, alert.playbook_id,
                         alert.playbook_version, alert.severity, outcome.incident_id)
        self.ctx.relay.kick()

    async def _process(self, batch: list[tuple[Any, GlobalIncident]]) -> list[Outcome]:
        playbooks = self.ctx.playbooks.compiled  # one set for the whole batch
        async with self.ctx.db.transaction() as session:
            return await process_batch(session, [incident for _, incident in batch],
                                       self.classifier, playbooks)

    async def _one_by_one(self, batch: list[tuple[Any, GlobalIncident]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for record, incident in batch:
            try:
                outcomes += await retry_transient(lambda i=(record, incident): self._process([i]),
                                                  "rules incident")
            except Exception as exc:
                if classify_error(exc) == "transient":
                    raise
                log.error("incident %s cannot be processed: %s", incident.incident_id, exc)
                await dead_letter(self.ctx.broker, record, exc, self.ctx.source)
        return outcomes


def register(ctx: ServiceContext, classifier: Classifier) -> RulesConsumer:
    consumer = RulesConsumer(ctx, classifier)

    @ctx.broker.subscriber(INCIDENTS.name, batch=True, max_records=BATCH_SIZE,
                           **consumer_options(ctx.settings, GROUP))
    async def on_incidents(message: KafkaMessage) -> None:
        raw = message.raw_message
        await consumer.handle_records(raw if isinstance(raw, tuple) else (raw,))

    # Every instance must see every playbook change: no group, start at the end.
    @ctx.broker.subscriber(PLAYBOOKS.name, **consumer_options(ctx.settings, None))
    async def on_playbooks(event: PlaybooksChanged) -> None:
        log.info("playbooks changed by %s: %s", event.actor, event.versions)
        await ctx.playbooks.reload(ctx.db)

    return consumer
