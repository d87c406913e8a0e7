"""The rules consumer: incidents in, proposed or auto-confirmed alerts out.

Thin by design: decode (FastStream validates the contract), call the domain
(``prevent.rules``), commit. Effects are durable in the database (with their
events in the outbox) before the handler returns, and only then is the offset
committed.
"""

from __future__ import annotations

import logging

from prevent.classification import Classifier
from prevent.contracts import INCIDENTS, PLAYBOOKS, GlobalIncident, PlaybooksChanged
from prevent.messaging import consumer_options
from prevent.rules import process_incident
from prevent.runtime import ServiceContext

log = logging.getLogger("prevent.rules")
GROUP = "prevent-rules"


def register(ctx: ServiceContext, classifier: Classifier) -> None:
    options = consumer_options(ctx.settings, GROUP)

    @ctx.broker.subscriber(INCIDENTS.name, **options)
    async def on_incident(incident: GlobalIncident) -> None:
        async with ctx.db.transaction() as session:
            outcome = await process_incident(session, incident, classifier, ctx.playbooks.compiled)
        for alert in outcome.alerts:
            log.info("alert %s %s (playbook %s v%d, severity %d) for incident %s", alert.alert_id,
                     alert.status.value, alert.playbook_id, alert.playbook_version,
                     alert.severity, incident.incident_id)
        ctx.relay.kick()

    # Every instance must see every playbook change: no group, start at the end.
    @ctx.broker.subscriber(PLAYBOOKS.name, **consumer_options(ctx.settings, None))
    async def on_playbooks(event: PlaybooksChanged) -> None:
        log.info("playbooks changed by %s: %s", event.actor, event.versions)
        await ctx.playbooks.reload(ctx.db)
