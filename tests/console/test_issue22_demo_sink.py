"""Issue 22, defect 7: when the demo HTTP sink's port is taken the sink moves; the sample
webhook contact must move with it (else a notice is recorded "sent" that nobody received)."""

from __future__ import annotations

import socket
from pathlib import Path

from sqlalchemy import select

from prevent.cli.services import running_system
from prevent.platform.config import Settings
from prevent.platform.storage.tables import Contact


async def test_sample_webhook_follows_a_moved_demo_sink(tmp_path: Path) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    settings = Settings(var_dir=tmp_path / "var", demo_http_sink_port=taken,
                        secret_key="test-secret-key-not-for-production")
    try:
        async with running_system(settings, services=("centre-notifier",), feeds=[],
                                  demo=True) as system:
            sink = system.http_sink
            assert sink is not None and sink.port != taken, "the sink moved off the taken port"
            assert system.ctx.settings.demo_http_sink_port == sink.port
            async with system.ctx.db.transaction() as session:
                hooks = [c.webhook_url for c in (await session.execute(
                    select(Contact).where(Contact.webhook_url.is_not(None)))).scalars()]
            assert hooks, "the sample registry has a webhook contact"
            assert all(h.startswith(f"{sink.url}/webhook/") for h in hooks), hooks
    finally:
        squatter.close()
