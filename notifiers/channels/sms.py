"""SMS through a configurable HTTP gateway: a generic JSON POST or a Twilio-compatible form.

Bodies stay within SMS limits: GSM-7 texts are 160 characters in one segment and 153
per segment when concatenated (extension characters such as ``€[]{}`` count twice);
anything outside GSM-7 is sent as UCS-2, 70 characters in one segment, 67 when
concatenated. Long texts are cut to ``sms_max_segments`` with the reply code and the
acknowledgement link always kept at the end. The notice id goes to the gateway as the
message reference and ``Idempotency-Key``.
"""

from __future__ import annotations

import math
import re

import httpx

from notifiers.channels.base import OutgoingNotice, SendResult
from notifiers.channels.http import result_for_status
from prevent.platform.config import Settings
from prevent.platform.messaging import TransientError

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
ELLIPSIS = "..."  # "…" is not GSM-7 and would turn the whole text into UCS-2
TAIL = {"en": " Reply ACK {code} or confirm: {url}", "fr": " Répondez ACK {code} ou confirmez : {url}"}
EXERCISE_PREFIX = {"en": "EXERCISE: ", "fr": "EXERCICE : "}


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def segments(text: str) -> int:
    """How many SMS segments a text needs."""
    if is_gsm7(text):
        units, single, multi = sum(2 if c in GSM7_EXTENSION else 1 for c in text), 160, 153
    else:
        units, single, multi = len(text.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / multi)


def fit(core: str, tail: str, max_segments: int) -> str:
    """``core + tail`` within ``max_segments``, shortening only the core (the tail is the
    acknowledgement instruction and must survive)."""
    if segments(core + tail) <= max_segments:
        return core + tail
    lo, hi = 0, len(core)
    while lo < hi:  # the longest prefix that still fits
        mid = (lo + hi + 1) // 2
        if segments(core[:mid].rstrip() + ELLIPSIS + tail) <= max_segments:
            lo = mid
        else:
            hi = mid - 1
    return (core[:lo].rstrip() + ELLIPSIS if lo else "") + tail


def sms_text(notice: OutgoingNotice, max_segments: int) -> str:
    lang = notice.language if notice.language in TAIL else "en"
    body = " ".join(line.strip() for line in notice.text.splitlines()
                    if line.strip() and (not notice.ack_url or notice.ack_url not in line))
    prefix = EXERCISE_PREFIX[lang] if notice.exercise else ""
    core = f"{prefix}{notice.subject}. {body}"
    return fit(core, TAIL[lang].format(code=notice.ack_code, url=notice.ack_url), max_segments)


def normalize_phone(phone: str) -> str:
    """E.164-like: a leading + kept, every other non-digit dropped."""
    digits = re.sub(r"\D", "", phone)
    return f"+{digits}" if phone.strip().startswith("+") else digits


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
        request: dict[str, object]
        receipts = s.public_base_url.rstrip("/") + "/sms/status"  # delivery receipts come back here
        if s.sms_gateway_kind == "twilio":
            request = {"data": {"To": to, "From": s.sms_sender, "Body": text, "StatusCallback": receipts}}
        else:
            request = {"json": {"to": to, "from": s.sms_sender, "text": text,
                                "reference": notice.notice_id, "status_url": receipts}}
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=s.http_timeout_seconds,
                                         follow_redirects=False, trust_env=False) as client:
                response = await client.post(s.sms_gateway_url, headers=headers, auth=auth,
                                             **request)  # type: ignore[arg-type]
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
