"""SMS through a configurable HTTP gateway: a generic JSON POST or a Twilio-compatible form.

Bodies stay within SMS limits: GSM-7 texts are 160 characters in one segment and 153
per segment when concatenated (extension characters such as ``€[]{}`` count twice);
anything outside GSM-7 is sent as UCS-2, 70 characters in one segment, 67 when
concatenated. Long texts are cut to ``sms_max_segments`` with the reply code and the
acknowledgement link always kept at the end. The notice id goes to the gateway as the
message reference and ``Idempotency-Key``.
"""

from __future__ import annotations

from typing import TypedDict

import httpx

from notifiers.channels.http import result_for_status
from prevent.notices.channel import OutgoingNotice, SendResult
from prevent.notices.sms_text import normalize_phone, sms_text
from prevent.platform.config import Settings
from prevent.platform.messaging import TransientError


class _GatewayBody(TypedDict, total=False):
    """How the body goes to ``client.post``: a Twilio-compatible form or generic JSON."""

    data: dict[str, str]
    json: dict[str, str]


class SmsChannel:
    name = "sms"

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._transport = transport  # tests inject httpx.MockTransport

    def _auth(self) -> tuple[dict[str, str], httpx.BasicAuth | None]:
        s = self.settings
        token = s.sms_gateway_token.get_secret_value() if s.sms_gateway_token else None
        if s.sms_gateway_username and token:
            return {}, httpx.BasicAuth(s.sms_gateway_username, token)
        return ({"Authorization": f"Bearer {token}"} if token else {}), None

    async def send(self, notice: OutgoingNotice) -> SendResult:
        s = self.settings
        if not s.sms_gateway_url:
            return SendResult.fail("no SMS gateway configured (PREVENT_SMS_GATEWAY_URL)")
        text = sms_text(notice, s.sms_max_segments)
        to = normalize_phone(notice.address)
        headers, auth = self._auth()
        headers["Idempotency-Key"] = notice.notice_id
        request: _GatewayBody
        receipts = s.public_base_url.rstrip("/") + "/sms/status"  # delivery receipts come back here
        if s.sms_gateway_kind == "twilio":
            request = {"data": {"To": to, "From": s.sms_sender, "Body": text, "StatusCallback": receipts}}
        else:
            request = {"json": {"to": to, "from": s.sms_sender, "text": text,
                                "reference": notice.notice_id, "status_url": receipts}}
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=s.http_timeout_seconds,
                                         follow_redirects=False, trust_env=False) as client:
                # httpx types post()'s auth without None, which it accepts and passes on to
                # request() (encode/httpx#3770); None does what the client's default (none) does.
                response = await client.post(s.sms_gateway_url, headers=headers,
                                             auth=auth,  # type: ignore[arg-type]
                                             **request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Our own gateway is down: the notifier waits for it, committing nothing.
            raise TransientError(f"SMS gateway unavailable: {type(exc).__name__}") from exc
        except httpx.TimeoutException as exc:
            return SendResult.retry(f"SMS gateway timed out: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return SendResult.retry(f"SMS gateway connection failed: {type(exc).__name__}")
        return result_for_status(response.status_code, "SMS gateway", _reference(response))


def _reference(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    ref = data.get("sid") or data.get("id") or data.get("reference")
    return str(ref)[:200] if ref else None
