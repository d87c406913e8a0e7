"""WebSub (W3C, formerly PubSubHubbub): real-time pushes from hubs that feeds advertise.

Subscribing: ``POST hub`` with ``hub.mode=subscribe``, ``hub.topic``, ``hub.callback``,
``hub.secret`` and ``hub.lease_seconds``. The hub then verifies the intent with a GET to
the callback; the challenge is echoed only for a subscription that is awaiting exactly
that verification (right mode, same topic), so nobody can subscribe us to anything. A
push is a POST to the callback whose ``X-Hub-Signature`` is an HMAC of the raw body with
our secret (sha1 per WebSub, sha256/384/512 accepted); anything else is refused and
never parsed. Leases are renewed before they expire, and the feed keeps being polled at a
slower rate (``websub_poll_factor``) in case the hub goes quiet.

The callback URL is ``{public_base_url}/websub/{callback_id}``; the routes live in
``prevent/web/websub_callbacks.py``. Subscriptions are made only when the public base URL is a
public address (or ``allow_private_addresses`` is set): a hub on the internet cannot
reach a console on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update

from prevent.contracts import utcnow
from prevent.feeds.catalog import FeedConfig
from prevent.platform.config import Settings
from prevent.platform.netguard import BlockedAddress
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import WebSubSubscription

__all__ = ["PushReceiver", "WebSub", "sign", "valid_signature", "verify_intent"]

log = logging.getLogger("prevent.websub")
PushReceiver = Callable[[str, bytes, Mapping[str, str]], Awaitable[int]]
_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
               "sha512": hashlib.sha512}
MAX_PUSH_BYTES = 10 * 1024 * 1024


def sign(secret: str, body: bytes, algorithm: str = "sha256") -> str:
    """The ``X-Hub-Signature`` value a hub sends for ``body``."""
    digest = hmac.new(secret.encode(), body, _ALGORITHMS[algorithm]).hexdigest()
    return f"{algorithm}={digest}"


def valid_signature(secret: str, body: bytes, header: str | None) -> bool:
    if not header or "=" not in header:
        return False
    algorithm, _, given = header.strip().partition("=")
    if algorithm.lower() not in _ALGORITHMS:
        return False
    return hmac.compare_digest(sign(secret, body, algorithm.lower()), f"{algorithm.lower()}={given.lower()}")


async def verify_intent(db: Database, callback_id: str, params: Mapping[str, str], *,
                        now: datetime | None = None) -> str | None:
    """Answer a hub's verification GET: the challenge to echo, or None to refuse (404)."""
    now = now or utcnow()
    mode, topic = params.get("hub.mode", ""), params.get("hub.topic", "")
    async with db.transaction() as session:
        sub = (await session.execute(select(WebSubSubscription).where(
            WebSubSubscription.callback_id == callback_id))).scalar_one_or_none()
        if sub is None or topic != sub.topic:
            return None
        if mode == "denied":
            sub.state, sub.pending_mode = "denied", None
            reason = params.get("hub.reason", "no reason given")
            sub.last_error = f"hub denied the subscription: {reason}"[:500]
            return ""
        challenge = params.get("hub.challenge")
        if not challenge or mode != sub.pending_mode:
            return None
        if mode == "subscribe":
            lease = _int(params.get("hub.lease_seconds")) or sub.lease_seconds
            sub.state, sub.pending_mode, sub.verified_at = "active", None, now
            sub.lease_seconds = lease
            sub.expires_at = now + timedelta(seconds=lease) if lease else None
            sub.last_error = None
        else:  # unsubscribe
            sub.state, sub.pending_mode, sub.expires_at = "unsubscribed", None, None
        return challenge


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


async def subscription(db: Database, callback_id: str) -> WebSubSubscription | None:
    async with db.transaction() as session:
        return (await session.execute(select(WebSubSubscription)
                                      .where(WebSubSubscription.callback_id == callback_id))
                ).scalar_one_or_none()


async def record_push(db: Database, feed_id: str, *, now: datetime | None = None) -> None:
    async with db.transaction() as session:
        sub = await session.get(WebSubSubscription, feed_id)
        if sub is not None:
            sub.last_push_at = now or utcnow()
            sub.pushes = (sub.pushes or 0) + 1


async def note_push(db: Database, callback_id: str, *, now: datetime | None = None) -> None:
    """A signed push reached a process without the feed watcher (production runs them apart):
    leave the watcher a note to poll that feed now (``take_pushed``). The push's content is
    fetched again by that poll, one conditional request."""
    now = now or utcnow()
    async with db.transaction() as session:
        await session.execute(update(WebSubSubscription).where(
            WebSubSubscription.callback_id == callback_id).values(
            push_pending_at=now, last_push_at=now, pushes=WebSubSubscription.pushes + 1))


async def take_pushed(db: Database) -> list[str]:
    """The feeds pushed to another process since the last call, each returned once even
    with several watchers asking (a note is cleared only if it is still the one read)."""
    taken = []
    async with db.transaction() as session:
        for feed_id, at in (await session.execute(
                select(WebSubSubscription.feed_id, WebSubSubscription.push_pending_at).where(
                    WebSubSubscription.push_pending_at.is_not(None)))).all():
            cleared = await session.execute(update(WebSubSubscription).where(
                WebSubSubscription.feed_id == feed_id, WebSubSubscription.push_pending_at == at)
                .values(push_pending_at=None))
            if cleared.rowcount == 1:  # type: ignore[attr-defined]
                taken.append(feed_id)
    return taken


def _is_public_base(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name: assume the operator made it reachable
    return ip.is_global


class WebSub:
    """Subscribes feeds to their hubs and renews leases; the watcher calls it after a poll."""

    def __init__(self, db: Database, client: httpx.AsyncClient, settings: Settings) -> None:
        self.db = db
        self.client = client
        self.settings = settings

    @property
    def enabled(self) -> bool:
        s = self.settings
        return s.websub_enabled and (s.allow_private_addresses or _is_public_base(s.public_base_url))

    def callback_url(self, callback_id: str) -> str:
        return f"{self.settings.public_base_url.rstrip('/')}/websub/{callback_id}"

    async def is_active(self, feed_id: str, *, now: datetime | None = None) -> bool:
        async with self.db.transaction() as session:
            sub = await session.get(WebSubSubscription, feed_id)
        now = now or utcnow()
        return bool(sub and sub.state == "active" and (sub.expires_at is None or sub.expires_at > now))

    async def ensure(self, feed: FeedConfig, hub_url: str, topic: str) -> None:
        """Subscribe when the feed has no live subscription to this hub and topic."""
        if not self.enabled:
            return
        async with self.db.transaction() as session:
            sub = await session.get(WebSubSubscription, feed.id)
        now = utcnow()
        if sub is not None and sub.hub_url == hub_url and sub.topic == topic:
            if sub.state == "denied":
                return
            if sub.state == "pending" and sub.requested_at > now - timedelta(hours=1):
                return  # the hub is still verifying
            if sub.state == "active" and not self._due(sub, now):
                return
        await self.subscribe(feed.id, hub_url, topic)

    def _due(self, sub: WebSubSubscription, now: datetime) -> bool:
        if sub.expires_at is None:
            return False
        lease = sub.lease_seconds or self.settings.websub_lease_seconds
        margin = timedelta(seconds=max(60, min(lease * 0.1, 86400)))
        return sub.expires_at - margin <= now

    async def subscribe(self, feed_id: str, hub_url: str, topic: str) -> bool:
        """Send the subscription request; True when the hub accepted it for verification."""
        now = utcnow()
        async with self.db.transaction() as session:
            sub = await session.get(WebSubSubscription, feed_id)
            if sub is None or sub.hub_url != hub_url or sub.topic != topic:
                if sub is not None:
                    await session.delete(sub)
                    await session.flush()
                sub = WebSubSubscription(feed_id=feed_id, callback_id=secrets.token_urlsafe(24),
                                         secret=secrets.token_hex(32), hub_url=hub_url, topic=topic,
                                         state="pending", requested_at=now, pushes=0)
                session.add(sub)
            # A renewal keeps the secret (pushes in flight stay valid) and the active state.
            sub.pending_mode, sub.requested_at = "subscribe", now
            sub.lease_seconds = self.settings.websub_lease_seconds
            callback, secret = self.callback_url(sub.callback_id), sub.secret
        form = {"hub.mode": "subscribe", "hub.topic": topic, "hub.callback": callback,
                "hub.secret": secret, "hub.lease_seconds": str(self.settings.websub_lease_seconds)}
        error = await self._post(hub_url, form)
        if error:
            log.warning("feed_id=%s websub subscribe to %s failed: %s", feed_id, hub_url, error)
            async with self.db.transaction() as session:
                sub = await session.get(WebSubSubscription, feed_id)
                if sub is not None:
                    sub.last_error, sub.pending_mode = error[:500], None
                    if sub.state != "active":
                        sub.state = "failed"
            return False
        log.info("feed_id=%s websub subscription requested at %s", feed_id, hub_url)
        return True

    async def _post(self, hub_url: str, form: dict[str, str]) -> str | None:
        try:
            response = await self.client.post(hub_url, data=form, follow_redirects=False)
        except (httpx.HTTPError, BlockedAddress) as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.status_code not in (202, 204):
            return f"hub answered HTTP {response.status_code}: {response.text[:200]}"
        return None

    async def renew_due(self, *, now: datetime | None = None) -> int:
        """Re-subscribe every subscription whose lease ends soon; returns how many were sent."""
        now = now or utcnow()
        async with self.db.transaction() as session:
            subs = (await session.execute(select(WebSubSubscription)
                                          .where(WebSubSubscription.state == "active"))).scalars().all()
        due = [s for s in subs if self._due(s, now)]
        renewed = 0
        for sub in due:
            renewed += await self.subscribe(sub.feed_id, sub.hub_url, sub.topic)
        return renewed
