"""Issue 22, defect 12: silences (create, list, expire early) and dead letters (list, replay)
have console pages, for the roles that may use them."""

from __future__ import annotations

import re
import uuid
from contextlib import aclosing

from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from prevent.contracts import DEADLETTER
from prevent.platform.storage.tables import SilenceRow
from prevent.users import Role

from .conftest import Console


async def test_an_inspector_creates_and_expires_a_silence_a_viewer_reads(console: Console) -> None:
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        page = await client.get("/silences")
        assert page.status_code == 200 and 'id="silence-form"' in page.text
        assert 'href="/silences"' in page.text  # in the navigation
        empty = await client.post("/silences", data={"csrf_token": token, "hours": "2",
                                                     "comment": "no matcher"})
        assert empty.status_code == 422 and "at least one matcher" in empty.text
        assert "no matcher" in empty.text  # the form is kept for fixing
        made = await client.post("/silences", data={
            "csrf_token": token, "community": "muslim", "keyword": "football",
            "hours": "2", "comment": "derby match reports"})
        assert made.status_code == 303
        listed = (await client.get(made.headers["location"])).text
        assert "Silence created." in listed and "derby match reports" in listed
        assert "badge proposed\">active" in listed
        silence_id = re.search(r'data-silence-id="([^"]+)"', listed).group(1)
        viewer, vtoken = await console.signed_in(Role.VIEWER)
        async with aclosing(viewer):
            seen = await viewer.get("/silences")
            assert seen.status_code == 200 and "derby match reports" in seen.text
            assert 'id="silence-form"' not in seen.text and "Expire now" not in seen.text
            refused = await viewer.post(f"/silences/{silence_id}/expire", data={"csrf_token": vtoken})
            assert refused.status_code == 403
        ended = await client.post(f"/silences/{silence_id}/expire", data={"csrf_token": token})
        assert ended.status_code == 303
        after = (await client.get(ended.headers["location"])).text
        assert "ended early (duty-inspector)" in after
    async with console.db.transaction() as session:
        row = (await session.execute(select(SilenceRow))).scalars().one()
    assert row.matchers == {"community": "muslim", "keyword": "football"}
    assert row.expired_by == "duty-inspector"


async def test_dead_letters_are_for_inspectors_and_admins(console: Console) -> None:
    viewer, _t = await console.signed_in(Role.VIEWER)
    async with aclosing(viewer):
        assert (await viewer.get("/deadletters")).status_code == 403
        assert 'href="/deadletters"' not in (await viewer.get("/")).text
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        page = await client.get("/deadletters")  # this console has no broker
        assert page.status_code == 200 and "no Kafka broker" in page.text
        assert (await client.post("/deadletters/replay", data={"csrf_token": token})
                ).status_code == 403  # replay is an administrator's


async def test_an_admin_lists_and_replays_a_dead_letter(console: Console, kafka_bootstrap: str
                                                        ) -> None:
    key = f"dl-{uuid.uuid4().hex[:8]}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(DEADLETTER.name, b'{"broken": true}', key=key, headers=[
            ("x-origin-topic", b"prevent.audit.v1"), ("x-origin-partition", b"0"),
            ("x-origin-offset", b"41"), ("x-error-kind", b"invalid"),
            ("x-error", b"validation failed: title missing")])
    finally:
        await producer.stop()
    console.app.state.console.bootstrap = kafka_bootstrap
    client, token = await console.signed_in(Role.ADMIN)
    async with aclosing(client):
        page = await client.get("/deadletters", params={"topic": "prevent.audit.v1"})
        assert page.status_code == 200, page.text
        row = re.search(rf"<tr>.*?{key.decode()}.*?</tr>", page.text, re.S).group(0)
        assert "validation failed: title missing" in row and "prevent.audit.v1[0]@41" in row
        letter = re.search(r'name="letter" value="([^"]+)"', row).group(1)
        done = await client.post("/deadletters/replay", data={"csrf_token": token, "letter": letter})
        assert done.status_code == 303 and done.headers["location"] == "/deadletters?replayed=1"
