"""Patrol plans per zone: iCalendar that parses, RFC 7946 GeoJSON, visits recorded once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from icalendar import Calendar

from notifiers import patrol
from prevent.contracts import AlertStatus, assignment_id_for, utcnow
from prevent.platform.config import Settings
from prevent.platform.storage.db import Database
from prevent.users import Principal, Role
from prevent.web.app import ConsoleState, create_app
from prevent.web.auth import current_principal

from .helpers import alert, contact, load_registry, playbook, registry


@asynccontextmanager
async def api(db: Database, settings: Settings, role: Role | None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(None)  # type: ignore[arg-type]
    app.state.console = ConsoleState(db=db, settings=settings)
    if role is not None:
        app.dependency_overrides[current_principal] = lambda: Principal(f"officer-{role.value}", role)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


async def assigned(db: Database, *, exercise: bool = False) -> list[str]:
    await load_registry(db, registry([contact(i) for i in range(3)], sites=3))
    async with db.transaction() as session:
        await patrol.handle_alert(session, alert(exercise=exercise, at=utcnow() - timedelta(hours=1)),
                                  playbook())
    return [assignment_id_for("alr_test", f"site-{s:03d}") for s in range(3)]


def assert_rfc7946_feature_collection(doc: dict) -> None:
    assert doc["type"] == "FeatureCollection" and isinstance(doc["features"], list)
    assert "crs" not in doc  # RFC 7946 removed crs: WGS 84 only
    for f in doc["features"]:
        assert f["type"] == "Feature" and isinstance(f["properties"], dict)
        assert isinstance(f.get("id"), str | int)
        geometry = f["geometry"]
        if geometry is not None:
            assert geometry["type"] == "Point" and len(geometry["coordinates"]) == 2
            lon, lat = geometry["coordinates"]
            assert -180 <= lon <= 180 and -90 <= lat <= 90


async def test_zone_exports(db: Database, settings: Settings) -> None:
    ids = await assigned(db, exercise=True)
    async with api(db, settings, Role.VIEWER) as client:
        ics = await client.get("/patrols/zones/zone-test.ics")
        geo = await client.get("/patrols/zones/zone-test.geojson")
        empty = await client.get("/patrols/zones/zone-none.geojson")
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    cal = Calendar.from_ical(ics.content)
    events = cal.walk("VEVENT")
    assert len(events) == 3 * 36  # 72 hours every 120 minutes, three sites
    assert len({str(e["UID"]) for e in events}) == len(events)
    first = min(events, key=lambda e: e.decoded("DTSTART"))
    assert first.decoded("DTEND") - first.decoded("DTSTART") == timedelta(minutes=15)
    assert str(first["SUMMARY"]).startswith("EXERCISE - Patrol: Sample Mosque")
    assert "FP-" in str(first["DESCRIPTION"]) and first["GEO"].latitude > 45
    assert geo.headers["content-type"] == "application/geo+json"
    doc = geo.json()
    assert_rfc7946_feature_collection(doc)
    assert sorted(f["id"] for f in doc["features"]) == sorted(ids)
    props = doc["features"][0]["properties"]
    assert (props["planned_visits"], props["completed_visits"], props["priority"]) == (36, 0, "high")
    assert doc["features"][0]["geometry"]["coordinates"][0] == -75.70  # longitude first
    assert empty.json() == {"type": "FeatureCollection", "name": "patrols-zone-none", "features": []}


async def test_cancelled_plan_is_cancelled_in_the_calendar(db: Database, settings: Settings) -> None:
    await assigned(db)
    async with db.transaction() as session:
        await patrol.handle_alert(session, alert(status=AlertStatus.CLOSED, revision=3), playbook())
    async with api(db, settings, Role.VIEWER) as client:
        ics = await client.get("/patrols/zones/zone-test.ics")
    assert {str(e["STATUS"]) for e in Calendar.from_ical(ics.content).walk("VEVENT")} == {"CANCELLED"}


async def test_visits_planned_vs_completed(db: Database, settings: Settings) -> None:
    aid = (await assigned(db))[0]
    at = (utcnow() - timedelta(minutes=30)).isoformat()
    async with api(db, settings, Role.DUTY_INSPECTOR) as client:
        first = await client.post(f"/api/patrols/{aid}/visits", json={"visited_at": at, "note": "quiet"})
        again = await client.post(f"/api/patrols/{aid}/visits", json={"visited_at": at, "note": "quiet"})
        future = await client.post(f"/api/patrols/{aid}/visits",
                                   json={"visited_at": (utcnow() + timedelta(hours=1)).isoformat()})
        naive = await client.post(f"/api/patrols/{aid}/visits", json={"visited_at": "2024-01-01T10:00:00"})
        unknown = await client.post("/api/patrols/ptl_nope/visits", json={"visited_at": at})
        listing = await client.get(f"/api/patrols/{aid}/visits")
        geo = await client.get("/patrols/zones/zone-test.geojson")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["visit_id"] == again.json()["visit_id"] and again.json()["new"] is False
    assert first.json()["recorded_by"] == "officer-duty_inspector"
    assert (future.status_code, naive.status_code, unknown.status_code) == (422, 422, 404)
    body = listing.json()
    assert len(body["planned"]) == 36 and [v["note"] for v in body["completed"]] == ["quiet"]
    done = {f["id"]: f["properties"]["completed_visits"] for f in geo.json()["features"]}
    assert done[aid] == 1


async def test_patrol_routes_need_a_principal_and_the_right_role(db: Database, settings: Settings) -> None:
    aid = (await assigned(db))[0]
    at = utcnow().isoformat()
    async with api(db, settings, None) as client:
        anonymous = await client.get("/patrols/zones/zone-test.ics")
    async with api(db, settings, Role.VIEWER) as client:
        viewer = await client.post(f"/api/patrols/{aid}/visits", json={"visited_at": at})
    assert anonymous.status_code == 401 and viewer.status_code == 403
