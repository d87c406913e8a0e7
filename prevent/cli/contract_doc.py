"""The AsyncAPI document of every service, as FastStream generates it.

The services are registered on a broker that is never started, and each topic a
service produces is declared as a publisher with its contract, so the document
shows both directions.
"""

from __future__ import annotations

import json
from typing import Any

from faststream.specification import AsyncAPI

from prevent.contracts import ALERTS, AUDIT, DEADLETTER, INCIDENTS, NOTICES, PATROLS, PLAYBOOKS
from prevent.platform.config import Settings
from prevent.platform.messaging import make_broker
from prevent.platform.runtime import PlaybookHolder, ServiceContext, outbox_sender
from prevent.platform.storage.db import Database
from prevent.platform.storage.outbox import OutboxRelay

PRODUCED = {
    "watcher": (INCIDENTS,),
    "rules": (ALERTS, AUDIT, DEADLETTER),
    "centre-notifier": (NOTICES, DEADLETTER),
    "patrol-notifier": (PATROLS,),
    "console": (ALERTS, AUDIT, PLAYBOOKS),
}


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    from prevent.cli.services import register_services

    broker = make_broker(settings, "kafka:9092", client_id="asyncapi")
    db = Database("sqlite+aiosqlite:///:memory:")
    ctx = ServiceContext(settings, db, broker, OutboxRelay(db, outbox_sender(broker, "doc")),
                         PlaybookHolder(), "prevent/asyncapi")
    register_services(ctx, ("rules", "centre-notifier", "patrol-notifier"))
    declared = set()
    for service, topics in PRODUCED.items():
        for topic in topics:
            if topic.name in declared:
                continue
            declared.add(topic.name)
            broker.publisher(topic.name, title=f"{topic.name}:publish",
                             description=f"{topic.description} Key: {topic.key}. "
                                         f"Produced by: {service}.",
                             schema=topic.model)
    spec = AsyncAPI(broker, title="prevent", version="1.0.0",
                    description="Topics and contracts of the prevent services.",
                    schema_version="3.0.0")
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return document
