"""Every channel, every status code: one table of expected outcomes, real servers."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest

from notifiers.channels.email import EmailChannel
from notifiers.channels.sms import SmsChannel
from notifiers.channels.webhook import WebhookChannel
from prevent.notices.channel import OutgoingNotice
from prevent.platform.config import Settings
from prevent.platform.messaging import TransientError
from prevent.platform.netutil import free_port

from .helpers import ScriptedHttp, ScriptedSmtp

SENT, RETRY, FAIL, DOWN = "sent", "retry", "fail", "down"  # DOWN: TransientError, retried later (bounded)

SMTP_CODES = {250: SENT, 421: RETRY, 450: RETRY, 451: RETRY, 452: RETRY,
              550: FAIL, 551: FAIL, 552: FAIL, 553: FAIL, 554: FAIL}
HTTP_CODES = {200: SENT, 201: SENT, 202: SENT, 204: SENT,
              301: FAIL, 302: FAIL, 400: FAIL, 401: FAIL, 403: FAIL, 404: FAIL, 410: FAIL,
              413: FAIL, 422: FAIL,
              408: RETRY, 409: RETRY, 425: RETRY, 429: RETRY,
              500: RETRY, 502: RETRY, 503: RETRY, 504: RETRY}
CASES = ([("email", code, outcome) for code, outcome in SMTP_CODES.items()]
         + [(ch, code, outcome) for ch in ("sms", "webhook") for code, outcome in HTTP_CODES.items()]
         + [("email", None, DOWN), ("sms", None, DOWN),
            # a partner's webhook being down must not hold everyone else's notices back
            ("webhook", None, RETRY)])


def outgoing(address: str) -> OutgoingNotice:
    return OutgoingNotice(notice_id="ntc_status_test", address=address, subject="Subject",
                          text="Body\n", html="<p>Body</p>", language="en", exercise=False,
                          payload={"notice_id": "ntc_status_test"}, ack_url="http://x/ack/t",
                          ack_code="123456")


async def send(channel: str, code: int | None, settings: Settings) -> str:
    if channel == "email":
        if code is None:
            s = settings.model_copy(update={"smtp_port": free_port()})
            result = await EmailChannel(s).send(outgoing("a@example.org"))
        else:
            with ScriptedSmtp([f"{code} scripted reply"]) as smtp:
                s = settings.model_copy(update={"smtp_port": smtp.port})
                result = await EmailChannel(s).send(outgoing("a@example.org"))
    else:
        with ScriptedHttp() as http:
            base = http.url if code is not None else f"http://127.0.0.1:{free_port()}"
            url = f"{base}/status/{code}"
            s = settings.model_copy(update={"sms_gateway_url": url, "allow_private_addresses": True})
            ch = SmsChannel(s) if channel == "sms" else WebhookChannel(s)
            result = await ch.send(outgoing("+1 555 0100" if channel == "sms" else url))
    if result.ok:
        return SENT
    assert result.error  # every failure says why
    return RETRY if result.retryable else FAIL


@pytest.mark.parametrize(("channel", "code", "expected"), CASES,
                         ids=[f"{c}-{code or 'down'}" for c, code, _ in CASES])
async def test_every_status_code_of_every_channel(channel: str, code: int | None, expected: str,
                                                  settings: Settings) -> None:
    try:
        outcome = await send(channel, code, settings)
    except TransientError:
        outcome = DOWN
    assert outcome == expected


@pytest.mark.parametrize("kind", ["json", "twilio"])
async def test_an_sms_asks_the_gateway_for_delivery_receipts(kind: str, settings: Settings) -> None:
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"sid": "SM123"})

    s = settings.model_copy(update={"sms_gateway_url": "https://gateway.test/send", "sms_gateway_kind": kind,
                                    "public_base_url": "https://prevent.test/"})
    result = await SmsChannel(s, transport=httpx.MockTransport(gateway)).send(outgoing("+1 555 0100"))
    assert result.ok and result.provider_ref == "SM123"
    (request,) = seen
    if kind == "twilio":
        assert parse_qs(request.content.decode())["StatusCallback"] == ["https://prevent.test/sms/status"]
    else:
        assert json.loads(request.content)["status_url"] == "https://prevent.test/sms/status"
