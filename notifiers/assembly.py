"""Building the centre notifier from settings: channels, rate limits, the officer address;
and the demo's local stand-ins for the SMS gateway and partner webhooks."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta

from notifiers.centre import CentreNotifier, RetryPolicy
from notifiers.channels.email import EmailChannel
from notifiers.channels.sms import SmsChannel
from notifiers.channels.webhook import WebhookChannel
from notifiers.ratelimit import buckets
from prevent.notices.channel import Channel
from prevent.notices.templates import NoticeRenderer
from prevent.partners.acklinks import AckLinks
from prevent.platform.config import Settings
from prevent.platform.demo.httpsink import HttpSink
from prevent.platform.storage.db import Database

DEMO_OFFICER = "engagement-officer@example.org"  # sample address; the demo SMTP sink takes it


def channels_for(settings: Settings) -> dict[str, Channel]:
    # In the demo, the sample contacts' webhooks point at the local sink: trust that origin only.
    trusted = frozenset({f"http://127.0.0.1:{settings.demo_http_sink_port}"} if settings.demo else ())
    channels: dict[str, Channel] = {"email": EmailChannel(settings),
                                    "webhook": WebhookChannel(settings, trusted_origins=trusted)}
    if settings.sms_gateway_url:
        channels["sms"] = SmsChannel(settings)
    return channels


def build_centre_notifier(settings: Settings, db: Database) -> CentreNotifier:
    return CentreNotifier(
        db, NoticeRenderer(settings.playbooks_dir / "templates", settings.time_zone),
        channels_for(settings),
        AckLinks.from_settings(settings),
        RetryPolicy(outage_max_delay=settings.notice_outage_retry_max_seconds,
                    lease=timedelta(seconds=settings.notice_send_lease_seconds)),
        limits=buckets(settings.channel_rate_per_second),
        cap_sender=settings.mail_from, officer_email=settings.engagement_officer_email)


def demo_http_channels(settings: Settings, stack: AsyncExitStack) -> tuple[Settings, HttpSink]:
    """Point SMS and the sample contacts' webhooks at a local sink (unless configured)."""
    sink = HttpSink(settings.demo_http_sink_port).start()
    stack.callback(sink.stop)
    update: dict[str, object] = {}
    explicit = settings.model_fields_set
    if "sms_gateway_url" not in explicit:
        update["sms_gateway_url"] = f"{sink.url}/sms"
    if "engagement_officer_email" not in explicit:
        update["engagement_officer_email"] = DEMO_OFFICER
    return settings.model_copy(update=update), sink
