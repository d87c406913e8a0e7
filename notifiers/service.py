"""Kafka wiring of the notifiers: confirmed alerts in, notices and patrol assignments out."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from notifiers import patrol
from notifiers.centre import CentreNotifier
from prevent.contracts import ALERTS, Alert, AlertStatus
from prevent.platform.messaging import consumer_options
from prevent.platform.runtime import ServiceContext

if TYPE_CHECKING:
    from faststream.kafka.subscriber.usecase import DefaultSubscriber

log = logging.getLogger("prevent.notifiers")
CENTRE_GROUP = "prevent-centre-notifier"
PATROL_GROUP = "prevent-patrol-notifier"
ACTIONABLE = (AlertStatus.CONFIRMED, AlertStatus.CLOSED)


def register_centre(ctx: ServiceContext, notifier: CentreNotifier) -> None:
    notifier.on_recorded = ctx.relay.kick  # a notice's outcome is in the outbox: publish it

    # Typed here: keyword arguments from a dict leave FastStream's overloads undecided (Any).
    subscriber: DefaultSubscriber = ctx.broker.subscriber(
        ALERTS.name, **consumer_options(ctx.settings, CENTRE_GROUP))

    @subscriber
    async def on_alert_for_centres(alert: Alert) -> None:
        """Plans the alert's notices (committed before the offset is) and hands their sends to
        background tasks: no receiver, however slow or dead, holds the partition. What a task
        does not finish (a crash, a retry) stays due in the database for the scanner."""
        if alert.status not in ACTIONABLE:
            return
        playbook = await ctx.playbooks.version(ctx.db, alert.playbook_id, alert.playbook_version)
        await notifier.handle_alert(alert, playbook, wait=False)
        log.info("alert %s r%d: notices planned and dispatched", alert.alert_id, alert.revision)
        ctx.relay.kick()


def register_patrol(ctx: ServiceContext) -> None:
    subscriber: DefaultSubscriber = ctx.broker.subscriber(
        ALERTS.name, **consumer_options(ctx.settings, PATROL_GROUP))

    @subscriber
    async def on_alert_for_patrols(alert: Alert) -> None:
        if alert.status not in ACTIONABLE:
            return
        playbook = await ctx.playbooks.version(ctx.db, alert.playbook_id, alert.playbook_version)
        async with ctx.db.transaction() as session:
            changed = await patrol.handle_alert(session, alert, playbook)
        log.info("alert %s r%d: %d patrol assignments changed", alert.alert_id, alert.revision,
                 changed)
        ctx.relay.kick()
