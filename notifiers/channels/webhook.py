"""Webhooks: a signed JSON (or CAP 1.2 XML) POST to a partner's own endpoint.

* ``Prevent-Signature: t=<unix>,v1=<hex>`` is HMAC-SHA256 over ``"<t>." + body`` with
  ``webhook_signing_secret`` (verify with :func:`notifiers.channels.http.verify`);
* ``Idempotency-Key`` is the notice id, so a resend after a crash is recognisable;
* the URL is parsed again before each send (:func:`prevent.partners.registry.check_webhook_url`: a
  row stored before that check existed fails its own notice, never the others) and passes
  the SSRF guard (:mod:`prevent.platform.netguard`) at connect time;
* 5xx, 408/429 and timeouts are retried; other 4xx fail at once.

Unlike the SMTP relay and the SMS gateway, the endpoint is the partner's, not ours:
one partner's server being down must not hold every other notice back, so
connection failures are per-notice retryable results, not a blocked partition.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx

from notifiers.channels.http import SIGNATURE_HEADER, result_for_status, sign
from prevent.notices.channel import OutgoingNotice, SendResult
from prevent.partners.registry import check_webhook_url
from prevent.platform.config import Settings
from prevent.platform.netguard import BlockedAddress, Resolver, check_url, guarded_client, system_resolver

CAP_CONTENT_TYPE = "application/cap+xml"


def webhook_body(notice: OutgoingNotice) -> tuple[bytes, str]:
    if notice.webhook_format == "cap" and notice.cap_xml:
        return notice.cap_xml.encode(), CAP_CONTENT_TYPE
    return json.dumps(notice.payload, sort_keys=True, default=str).encode(), "application/json"


class WebhookChannel:
    name = "webhook"

    def __init__(self, settings: Settings, resolver: Resolver = system_resolver,
                 trusted_origins: frozenset[str] = frozenset()) -> None:
        """``trusted_origins`` ("http://127.0.0.1:8002") may be private: the demo's local sink,
        without opening private addresses to every URL (PREVENT_ALLOW_PRIVATE_ADDRESSES)."""
        self.settings = settings
        self._resolver = resolver
        self._trusted = trusted_origins

    async def send(self, notice: OutgoingNotice) -> SendResult:
        s = self.settings
        try:
            check_webhook_url(notice.address)
            check_url(notice.address)
        except (BlockedAddress, ValueError) as exc:
            return SendResult.fail(f"webhook URL refused: {exc}")
        body, content_type = webhook_body(notice)
        headers = {"Content-Type": content_type, "Idempotency-Key": notice.notice_id,
                   "User-Agent": "prevent-notifier/1"}
        if s.webhook_signing_secret:
            headers[SIGNATURE_HEADER] = sign(s.webhook_signing_secret.get_secret_value(), body)
        if notice.exercise:
            headers["Prevent-Exercise"] = "true"
        if notice.ack_url:
            headers["Prevent-Ack-Url"] = notice.ack_url
        parts = urlsplit(notice.address)
        allow_private = s.allow_private_addresses or f"{parts.scheme}://{parts.netloc}" in self._trusted
        try:
            async with guarded_client(allow_private, timeout=s.http_timeout_seconds,
                                      resolver=self._resolver) as client:
                response = await client.post(notice.address, content=body, headers=headers)
        except (BlockedAddress, httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return SendResult.fail(f"webhook URL refused: {exc}")
        except httpx.TimeoutException as exc:
            return SendResult.retry(f"webhook timed out: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return SendResult.retry(f"webhook unreachable: {type(exc).__name__}")
        return result_for_status(response.status_code, "webhook")
