"""Kafka plumbing shared by every service: broker factory, delivery policy, error middleware.

Delivery contract (see docs/ARCHITECTURE.md):

* producers wait for ``acks="all"``; idempotence only where the cluster supports it;
* consumers join a group, never auto-commit, and commit a message's offset only
  after the handler returned, i.e. after its effects are durable;
* handler failures are classified by :class:`ReliabilityMiddleware`:

  - a dependency that is down (database, SMTP, gateway, broker) is retried with
    capped exponential backoff *without returning*, so nothing is committed and
    the partition waits, in order, until the dependency is back;
  - a message that can never be processed (invalid JSON, unknown schema
    version, failed validation) is published to ``prevent.deadletter.v1`` with
    its origin and the error in headers, and only then is its offset committed;
  - anything else is retried a few times and then dead-lettered, so one bad
    message cannot stall a partition forever.

FastStream's own policies are unsafe here (``ACK_FIRST`` is at-most-once, ``ACK``
commits after an error, ``NACK_ON_ERROR`` re-seeks at once without limit, and each logs a
failed commit as CRITICAL), so subscribers with a group use ``MANUAL`` and the middleware
commits (:func:`commit`): after the handler returned or the message was dead-lettered; a
cancelled handler (shutdown) commits nothing; a commit refused after a rebalance is a warning,
since the partition's new owner reads the message again and the handlers are idempotent.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiokafka.errors
import httpx
import pydantic
from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from prevent.contracts import DEADLETTER, Contract, Topic, cloudevent_headers, utcnow
from prevent.platform.broker import BrokerFeatures, broker_features, split_bootstrap
from prevent.platform.config import Settings
from prevent.platform.retrying import RetryCallState, retrying

log = logging.getLogger("prevent.platform.messaging")
T = TypeVar("T")

SUBSCRIBER_POLICY = AckPolicy.MANUAL  # ReliabilityMiddleware commits: see commit()
UNKNOWN_ERROR_ATTEMPTS = 3
DEADLETTER_MAX_BYTES = 2 * 1024 * 1024  # settings.kafka_deadletter_max_bytes
_TOO_LARGE = (aiokafka.errors.MessageSizeTooLargeError, aiokafka.errors.RecordTooLargeError)


class PermanentError(Exception):
    """The message itself is bad: retrying can never help."""


class TransientError(Exception):
    """A dependency is unavailable: retry later, do not commit."""


_TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    OperationalError,
    InterfaceError,
    httpx.TransportError,
    aiokafka.errors.KafkaConnectionError,
    aiokafka.errors.KafkaTimeoutError,
    aiokafka.errors.NotLeaderForPartitionError,
    aiokafka.errors.RequestTimedOutError,
)
_PERMANENT: tuple[type[BaseException], ...] = (
    PermanentError,
    pydantic.ValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
)


def classify_error(exc: BaseException) -> str:
    """'transient', 'permanent' or 'unknown' — the one place that decides retry policy."""
    if isinstance(exc, _PERMANENT):
        return "permanent"
    if isinstance(exc, _TRANSIENT) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return "transient"
    try:
        import aiosmtplib

        if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected
                      | aiosmtplib.SMTPTimeoutError):
            return "transient"
    except ImportError:  # pragma: no cover - aiosmtplib is a dependency
        pass
    if isinstance(exc, OSError):
        return "transient"
    return "unknown"


def strict_json_decoder(max_bytes: int) -> Callable[[Any, Any], Awaitable[Any]]:
    """Every message on our topics is JSON of bounded size; anything else is a permanent
    error, named as such, and never parsed."""

    async def decode(msg: Any, original_decoder: Callable[[Any], Awaitable[Any]]) -> Any:
        if isinstance(msg.raw_message, tuple):
            return msg.body  # a batch: its handler validates each record itself
        if len(msg.body) > max_bytes:
            raise PermanentError(f"message of {len(msg.body)} bytes exceeds the {max_bytes}-byte limit")
        try:
            return json.loads(msg.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PermanentError(f"invalid JSON: {exc}") from exc

    return decode


def make_broker(settings: Settings, bootstrap: str, *, client_id: str, **kwargs: Any) -> KafkaBroker:
    """A FastStream Kafka broker with the project's delivery settings and middleware."""
    holder: dict[str, KafkaBroker] = {}

    def middleware(msg: Any, /, *, context: Any) -> ReliabilityMiddleware:
        return ReliabilityMiddleware(msg, context=context, broker=holder["broker"], source=client_id,
                                     deadletter_max_bytes=settings.kafka_deadletter_max_bytes)

    broker = KafkaBroker(
        split_bootstrap(bootstrap),
        client_id=f"{settings.kafka_client_id}-{client_id}",
        acks="all",
        enable_idempotence=bool(settings.kafka_idempotent_producer),
        middlewares=[middleware],
        decoder=strict_json_decoder(settings.max_message_bytes),
        max_request_size=settings.kafka_max_request_bytes,
        logger=logging.getLogger(f"prevent.{client_id}"),
        log_level=logging.DEBUG,  # per-message "Received/Processed" lines are debug noise
        **kwargs,
    )
    holder["broker"] = broker
    # dead_letter() callers that pass no limit (the rules consumer) use the configured one.
    broker.prevent_deadletter_max_bytes = settings.kafka_deadletter_max_bytes  # type: ignore[attr-defined]
    return broker


def consumer_options(settings: Settings, group_id: str | None) -> dict[str, Any]:
    """Subscriber keyword arguments: group, manual commit, fetch latency, safe ack policy.

    ``settings`` should come from :func:`settings_for_broker` (what the cluster supports);
    otherwise the defaults follow whether a bootstrap is configured."""
    opts: dict[str, Any] = {
        "group_id": group_id,
        "ack_policy": SUBSCRIBER_POLICY,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        # A dependency outage holds the handler in its retry loop; give it time
        # before the group considers this consumer dead and rebalances.
        "max_poll_interval_ms": 15 * 60 * 1000,
    }
    session_ms = settings.kafka_session_timeout_ms or (
        KAFKA_SESSION_TIMEOUT_MS if settings.kafka_bootstrap else TANSU_SESSION_TIMEOUT_MS)
    opts["session_timeout_ms"] = session_ms
    opts["heartbeat_interval_ms"] = max(100, session_ms // 4)
    if group_id is None:
        opts["ack_policy"] = AckPolicy.ACK_FIRST  # group-less readers (live views) commit nothing
        opts["auto_offset_reset"] = "latest"
    return opts


TANSU_FETCH_WAIT_MS = 50  # Tansu answers a fetch only when its wait expires: keep it short
KAFKA_FETCH_WAIT_MS = 500  # Apache Kafka answers at once when data arrives: idle fetches cost CPU
TANSU_SESSION_TIMEOUT_MS = 2_000  # Tansu holds a first JoinGroup for half of it
KAFKA_SESSION_TIMEOUT_MS = 10_000


def defaults_for(settings: Settings, features: BrokerFeatures) -> Settings:
    """``settings`` with every Kafka default the operator left unset chosen by what the
    cluster supports: the idempotent producer where InitProducerId works, the fetch wait and
    the session timeout by engine (never below the cluster's group.min.session.timeout.ms).
    Values the operator set are kept (a session timeout below the cluster's minimum, which
    the cluster would refuse, is raised to it with a warning)."""
    update: dict[str, Any] = {}
    tansu = features.engine == "tansu"
    if settings.kafka_idempotent_producer is None:
        update["kafka_idempotent_producer"] = features.idempotence
    elif settings.kafka_idempotent_producer and not features.idempotence:
        log.warning("PREVENT_KAFKA_IDEMPOTENT_PRODUCER=true but the cluster grants no producer "
                    "ids (InitProducerId); publishing will fail")
    if "kafka_fetch_max_wait_ms" not in settings.model_fields_set:
        update["kafka_fetch_max_wait_ms"] = TANSU_FETCH_WAIT_MS if tansu else KAFKA_FETCH_WAIT_MS
    minimum = features.min_session_timeout_ms or 0
    session = settings.kafka_session_timeout_ms
    if session is None:
        update["kafka_session_timeout_ms"] = (TANSU_SESSION_TIMEOUT_MS if tansu
                                              else max(KAFKA_SESSION_TIMEOUT_MS, minimum))
    elif session < minimum:
        log.warning("kafka_session_timeout_ms=%d is below the cluster's "
                    "group.min.session.timeout.ms=%d; using %d", session, minimum, minimum)
        update["kafka_session_timeout_ms"] = minimum
    return settings.model_copy(update=update)


async def settings_for_broker(settings: Settings, bootstrap: str) -> tuple[Settings, BrokerFeatures]:
    """Ask the cluster what it supports (once per service start); see :func:`defaults_for`."""
    features = await broker_features(bootstrap)
    resolved = defaults_for(settings, features)
    log.info("Kafka at %s: %s, %d broker(s); idempotent producer %s, fetch wait %d ms, "
             "session timeout %d ms", bootstrap, features.engine, features.brokers,
             "on" if resolved.kafka_idempotent_producer else "off",
             resolved.kafka_fetch_max_wait_ms, resolved.kafka_session_timeout_ms)
    return resolved, features


async def publish(broker: KafkaBroker, topic: Topic, event: Contract, *, key: str,
                  event_id: str, source: str, subtype: str | None = None) -> None:
    """Publish one contract event with CloudEvents headers; returns once the cluster acked."""
    await broker.publish(
        event.model_dump_json().encode(),
        topic=topic.name,
        key=key.encode(),
        headers=cloudevent_headers(topic, event_id, source, subtype),
    )


class ReliabilityMiddleware(BaseMiddleware):
    """Classifies handler errors: retry in place, or dead-letter then commit."""

    def __init__(self, msg: Any, /, *, context: Any, broker: KafkaBroker, source: str,
                 deadletter_max_bytes: int = DEADLETTER_MAX_BYTES) -> None:
        super().__init__(msg, context=context)
        self._broker = broker
        self._source = source
        self._deadletter_max_bytes = deadletter_max_bytes

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        unknown_failures = 0

        def retryable(exc: Exception) -> bool:
            # Transient: wait it out, however long. Unknown: a few times. Permanent: never.
            nonlocal unknown_failures
            kind = classify_error(exc)
            if kind == "unknown":
                unknown_failures += 1
                return unknown_failures < UNKNOWN_ERROR_ATTEMPTS
            return kind == "transient"

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            assert exc is not None  # noqa: S101 - narrows the type: tenacity calls it after a failure
            where = ", ".join(_origin(r) for r in _records(msg)[:3]) or "unknown origin"
            log.warning("%s error handling %s (attempt %d), retrying in %.1fs: %s",
                        classify_error(exc), where, state.attempt_number, state.upcoming_sleep,
                        _describe(exc))

        result = None
        try:
            async for attempt in retrying(retry_on=retryable, before_sleep=log_retry):
                with attempt:
                    result = await call_next(msg)
        except Exception as exc:  # noqa: BLE001 - classification is the point
            for record in _records(msg):
                await dead_letter(self._broker, record, exc, self._source,
                                  max_bytes=self._deadletter_max_bytes)
        await commit(msg)
        return result


async def commit(msg: Any) -> None:
    """Commit a handled (or dead-lettered) message's offset: subscribers with a group use
    ``AckPolicy.MANUAL`` and this commits for them, after the handler's effects are durable.

    A commit can fail when the group has rebalanced meanwhile (a node died, a session expired
    under load): the partition's new owner reads the message again, and the handlers are
    idempotent, so that is a warning, not an error. A batch subscriber (the rules consumer)
    commits each stored batch itself; a message already acknowledged (``ACK_FIRST``, the
    group-less readers) has nothing to commit."""
    if isinstance(getattr(msg, "raw_message", None), tuple) or getattr(msg, "committed", None):
        return
    try:
        await msg.ack()
    except aiokafka.errors.KafkaError as exc:
        where = ", ".join(_origin(r) for r in _records(msg)[:1]) or "unknown origin"
        log.warning("offset of %s not committed (it will be read again, and handled once): %s",
                    where, _describe(exc))


def _records(msg: Any) -> tuple[Any, ...]:
    raw = getattr(msg, "raw_message", None)
    if raw is None:
        return ()
    return raw if isinstance(raw, tuple) else (raw,)


DEADLETTER_ATTEMPTS = 8
_RECORD_OVERHEAD = 4096  # record batch and record framing, with room to spare
_HEADER_VALUE_MAX = 1024  # each original header kept, at most this long


async def dead_letter(broker: KafkaBroker, record: Any, exc: BaseException, source: str, *,
                      max_bytes: int | None = None, topic: str = DEADLETTER.name,
                      attempts: int = DEADLETTER_ATTEMPTS) -> bool:
    """Publish one record to the dead-letter topic with its origin and the error in headers.

    The dead letter always fits: headers are bounded and the payload is cut to what is left
    of ``max_bytes`` (the topic's ``max.message.bytes``, set when it is created; by default
    ``kafka_deadletter_max_bytes`` of the settings ``make_broker`` was given), marked
    ``x-truncated: true`` with ``x-original-bytes``. Should the broker still refuse it as too
    large (a topic created elsewhere with a lower limit), the payload is halved and sent
    again. Other failures are retried with backoff, ``attempts`` times in all; then it gives
    up loudly (an ERROR naming the origin) and returns False, so that the partition moves on:
    a dead letter must never stall the good records behind it. Returns True once stored."""
    if max_bytes is None:
        max_bytes = int(getattr(broker, "prevent_deadletter_max_bytes", DEADLETTER_MAX_BYTES))
    origin = _origin(record)
    log.error("dead-lettering message from %s: %s", origin, _describe(exc))
    headers = {k: v.decode(errors="replace")[:_HEADER_VALUE_MAX] for k, v in (record.headers or ())
               if not k.startswith("x-")}
    headers.update({
        "x-origin-topic": str(record.topic),
        "x-origin-partition": str(record.partition),
        "x-origin-offset": str(record.offset),
        "x-error": _describe(exc)[:2000],
        "x-error-kind": type(exc).__name__[:200],
        "x-dead-lettered-by": source[:200],
        "x-dead-lettered-at": utcnow().isoformat(),
    })
    value = record.value or b""
    key = record.key[:_HEADER_VALUE_MAX] if record.key else record.key
    # Room for the truncation headers too, whether or not they are needed.
    fixed = (sum(len(k) + len(v.encode()) for k, v in headers.items()) + len(key or b"")
             + _RECORD_OVERHEAD + 64)
    cap = max(0, max_bytes - fixed)

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None and not isinstance(exc, _TOO_LARGE):  # that one is logged below
            log.warning("dead-letter publish failed (attempt %d of %d), retrying in %.1fs: %s",
                        state.attempt_number, attempts, state.upcoming_sleep, _describe(exc))

    try:
        # Too large: retried at once with half the payload; other failures with backoff.
        async for attempt in retrying(retry_on=lambda _exc: True, attempts=attempts, cap=5.0,
                                      at_once=lambda exc: isinstance(exc, _TOO_LARGE),
                                      before_sleep=log_retry):
            with attempt:
                payload = value if len(value) <= cap else value[:cap]
                extra = ({"x-truncated": "true", "x-original-bytes": str(len(value))}
                         if len(payload) < len(value) else {})
                try:
                    await broker.publish(payload, topic=topic, key=key, headers=headers | extra)
                except _TOO_LARGE:
                    cap = min(cap, len(payload)) // 2
                    log.warning("dead letter from %s too large for %s (attempt %d): retrying with "
                                "the payload cut to %d bytes", origin, topic,
                                attempt.retry_state.attempt_number, cap)
                    raise
                if extra:
                    log.error("dead letter from %s stored truncated to %d of %d bytes", origin,
                              len(payload), len(value))
                return True
    except Exception as last:  # noqa: BLE001 - bounded, then given up loudly
        log.critical("GAVE UP dead-lettering the message from %s after %d attempts (%s); its "
                     "offset is committed so the partition moves on: the record is only in %s "
                     "itself until its retention ends", origin, attempts, _describe(last),
                     record.topic)
    return False


M = TypeVar("M", bound=Contract)


def decode_record(record: Any, model: type[M], max_bytes: int) -> M:
    """Validate one raw record against its contract (batch handlers decode themselves)."""
    value = record.value or b""
    if len(value) > max_bytes:
        raise PermanentError(f"message of {len(value)} bytes exceeds the {max_bytes}-byte limit")
    try:
        return model.model_validate_json(value)
    except pydantic.ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise PermanentError(f"invalid JSON: {exc.errors()[0]['msg']}") from exc
        raise


async def retry_transient(operation: Callable[[], Awaitable[T]], what: str) -> T:
    """Run ``operation`` until it succeeds, waiting out transient failures (a dependency
    that is down); other errors propagate."""

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: transient error (attempt %d), retrying in %.1fs: %s", what,
                    state.attempt_number, state.upcoming_sleep, _describe(exc) if exc else "?")

    async for attempt in retrying(retry_on=lambda exc: classify_error(exc) == "transient",
                                  before_sleep=log_retry):
        with attempt:
            return await operation()
    raise AssertionError("unreachable: retrying() returns or raises")


def _origin(record: Any) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, pydantic.ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                 for e in exc.errors()[:5]]
        return f"validation failed: {'; '.join(parts)}"
    return f"{type(exc).__name__}: {exc}"
