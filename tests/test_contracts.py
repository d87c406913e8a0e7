from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest

from prevent.contracts import (
    INCIDENTS,
    TOPICS,
    GlobalIncident,
    NoticeKind,
    cloudevent_headers,
    notice_id_for,
    stable_id,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def incident(**overrides: object) -> GlobalIncident:
    data = dict(incident_id="inc_1", feed_id="wire", kind="rss", title="Title", published=NOW,
                first_seen=NOW, content_hash="h1")
    return GlobalIncident.model_validate(data | overrides)


def test_round_trip_json() -> None:
    original = incident(summary="s")
    assert GlobalIncident.model_validate_json(original.model_dump_json()) == original


def test_unknown_schema_version_and_fields_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="schema_version"):
        incident(schema_version=2)
    with pytest.raises(pydantic.ValidationError, match="extra"):
        incident(surprise=True)


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError):
        incident(published=datetime(2026, 1, 1))


def test_times_are_held_in_utc() -> None:
    """Whatever offset a producer wrote, an event holds the same instant in UTC (with
    ``datetime.UTC`` itself as its zone, so that times from events, the database and the
    clock compare without asking each zone for its offset)."""
    decoded = GlobalIncident.model_validate_json(incident().model_dump_json().replace(
        '"published":"2026-11-25T12:00:00Z"', '"published":"2026-11-25T14:30:00+02:30"'))
    assert decoded.published == NOW
    assert decoded.published.tzinfo is UTC
    assert decoded.first_seen.tzinfo is UTC  # "Z" as decoded by pydantic, not UTC itself
    assert '"published":"2026-11-25T12:00:00Z"' in decoded.model_dump_json()


def test_ids_are_deterministic_and_distinct() -> None:
    assert stable_id("x", "a", 1) == stable_id("x", "a", 1)
    assert stable_id("x", "a", 1) != stable_id("x", "a", 2)
    first = notice_id_for("alr", NoticeKind.INITIAL, 1, "c1", "email")
    assert first == notice_id_for("alr", NoticeKind.INITIAL, 5, "c1", "email")
    assert first != notice_id_for("alr", NoticeKind.UPDATE, 5, "c1", "email")
    assert first != notice_id_for("alr", NoticeKind.INITIAL, 1, "c1", "sms")


def test_cloudevents_headers() -> None:
    headers = cloudevent_headers(INCIDENTS, "inc_1:h1", "prevent/watcher", time=NOW)
    assert headers == {
        "ce_specversion": "1.0", "ce_id": "inc_1:h1", "ce_source": "prevent/watcher",
        "ce_type": "prevent.incident", "ce_time": NOW.isoformat(), "content-type": "application/json",
    }


def test_topic_registry_is_versioned_and_unique() -> None:
    names = [t.name for t in TOPICS]
    assert len(names) == len(set(names))
    assert all(n.startswith("prevent.") and n.endswith(".v1") for n in names)


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,x",
                                 "file:///etc/passwd", "https://e.com/a b", "//e.com/a"])
def test_an_incident_url_is_a_web_address_only(url: str) -> None:
    """L6: a report published to the incidents topic with another kind of link is refused at
    the edge (dead-lettered by the consumer), so no page renders it as a link."""
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from prevent.contracts import FeedKind, GlobalIncident

    now = datetime.now(UTC)
    fields = dict(incident_id="i", feed_id="f", kind=FeedKind.RSS, title="t", published=now,
                  first_seen=now, content_hash="h")
    with pytest.raises(ValidationError, match="http or https"):
        GlobalIncident(url=url, **fields)
    assert GlobalIncident(url="https://e.com/a?b=c", **fields).url == "https://e.com/a?b=c"
