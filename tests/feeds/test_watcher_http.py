"""The watcher against a real HTTP server on loopback, on SQLite and PostgreSQL.

Each test polls explicitly (``watcher.poll``) instead of waiting for the scheduler, so
nothing depends on timing except the stall test, which bounds a hang.
"""

from __future__ import annotations

import asyncio
import gzip
from datetime import timedelta
from email.utils import format_datetime

from sqlalchemy import select

from prevent.contracts import utcnow
from prevent.platform.storage.tables import FeedState, IncidentRow, SeenEntry

from .conftest import Collector, Rig, rss_feed
from .server import FeedServer, Request, Stall, rss
from .test_parse_security import BILLION_LAUGHS

ITEMS = (("a-1", "Mosque attacked in city centre"), ("a-2", "Synagogue guarded after threats"))


async def state_of(rig: Rig, feed_id: str) -> FeedState:
    async with rig.db.transaction() as session:
        state = await session.get(FeedState, feed_id)
    assert state is not None
    return state


# ------------------------------------------------------------------ conditional GET


async def test_etag_200_then_304_publishes_once(rig: Rig, feed_server: FeedServer) -> None:
    body = rss(*ITEMS)

    def route(req: Request):
        if req.headers.get("if-none-match") == '"v1"':
            return 304, {"ETag": '"v1"'}, b""
        return 200, {"ETag": '"v1"', "Content-Type": "application/rss+xml"}, body

    feed_server.routes["/etag.xml"] = route
    out = Collector()
    watcher = rig.watcher([rss_feed("etag", feed_server.url("/etag.xml"))], out)
    first = await watcher.poll("etag")
    second = await watcher.poll("etag")
    assert (first.published, second.published) == (2, 0)
    assert second.not_modified
    assert feed_server.hits("/etag.xml")[1].headers["if-none-match"] == '"v1"'
    state = await state_of(rig, "etag")
    assert (state.fetches, state.not_modified, state.etag) == (2, 1, '"v1"')
    assert out.titles == [t for _, t in ITEMS]


async def test_last_modified_200_then_304(rig: Rig, feed_server: FeedServer) -> None:
    stamp = "Mon, 06 Jan 2025 10:00:00 GMT"

    def route(req: Request):
        if req.headers.get("if-modified-since") == stamp:
            return 304, {}, b""
        return 200, {"Last-Modified": stamp}, rss(*ITEMS)

    feed_server.routes["/lm.xml"] = route
    watcher = rig.watcher([rss_feed("lm", feed_server.url("/lm.xml"))])
    assert (await watcher.poll("lm")).published == 2
    second = await watcher.poll("lm")
    assert second.not_modified and second.published == 0
    assert (await state_of(rig, "lm")).last_modified == stamp


# ------------------------------------------------------------------ transport


async def test_gzip_body_is_decompressed(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/gz.xml"] = lambda req: (
        200, {"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"}, gzip.compress(rss(*ITEMS)))
    out = Collector()
    outcome = await rig.watcher([rss_feed("gz", feed_server.url("/gz.xml"))], out).poll("gz")
    assert outcome.published == 2
    assert "gzip" in feed_server.hits("/gz.xml")[0].headers["accept-encoding"]
    assert "prevent/" in feed_server.hits("/gz.xml")[0].headers["user-agent"]


async def test_redirect_is_followed(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/old.xml"] = lambda req: (301, {"Location": "/new.xml"}, b"")
    feed_server.routes["/new.xml"] = lambda req: (200, {}, rss(*ITEMS))
    outcome = await rig.watcher([rss_feed("moved", feed_server.url("/old.xml"))]).poll("moved")
    assert outcome.published == 2


async def test_redirect_loop_is_an_error_not_a_hang(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/loop-a"] = lambda req: (302, {"Location": "/loop-b"}, b"")
    feed_server.routes["/loop-b"] = lambda req: (302, {"Location": "/loop-a"}, b"")
    outcome = await rig.watcher([rss_feed("loop", feed_server.url("/loop-a"))]).poll("loop")
    assert outcome.error and outcome.error.startswith("redirects:")
    assert len(feed_server.requests) == rig.settings.feed_max_redirects + 1
    state = await state_of(rig, "loop")
    assert (state.consecutive_errors, state.last_error_kind) == (1, "redirects")


async def test_429_retry_after_sets_the_next_poll(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/busy"] = lambda req: (429, {"Retry-After": "1800"}, b"slow down")
    outcome = await rig.watcher([rss_feed("busy", feed_server.url("/busy"))]).poll("busy")
    assert outcome.next_in == 1800  # longer than the 60 s backoff: the server's wish wins
    state = await state_of(rig, "busy")
    assert state.last_error_kind == "rate_limited"
    assert state.next_poll_at is not None
    assert timedelta(seconds=1790) < state.next_poll_at - utcnow() <= timedelta(seconds=1800)


async def test_503_retry_after_http_date_is_honoured_within_bounds(rig: Rig, feed_server: FeedServer) -> None:
    when = format_datetime(utcnow() + timedelta(days=3), usegmt=True)
    feed_server.routes["/down"] = lambda req: (503, {"Retry-After": when}, b"maintenance")
    outcome = await rig.watcher([rss_feed("down", feed_server.url("/down"))]).poll("down")
    assert outcome.error and outcome.error.startswith("http_5xx")
    assert outcome.next_in == rig.settings.feed_backoff_max_seconds  # 3 days, capped


async def test_cache_control_max_age_and_ttl_stretch_the_interval(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/cc"] = lambda req: (200, {"Cache-Control": "public, max-age=900"}, rss(*ITEMS))
    feed_server.routes["/ttl"] = lambda req: (200, {}, rss(*ITEMS, extra="<ttl>30</ttl>"))
    watcher = rig.watcher([rss_feed("cc", feed_server.url("/cc")), rss_feed("ttl", feed_server.url("/ttl"))])
    assert (await watcher.poll("cc")).next_in == 900
    assert (await watcher.poll("ttl")).next_in == 1800


async def test_stalled_body_times_out(rig: Rig, feed_server: FeedServer) -> None:
    half = rss(*ITEMS)[:120]
    feed_server.routes["/stall"] = lambda req: (200, {"Content-Length": "100000"}, [half, Stall(10)])
    outcome = await asyncio.wait_for(
        rig.watcher([rss_feed("stall", feed_server.url("/stall"))]).poll("stall"), timeout=8)
    assert outcome.error and outcome.error.startswith("timeout:")
    assert (await state_of(rig, "stall")).consecutive_errors == 1


async def test_body_over_the_limit_is_cut_off(db, tmp_path, feed_server: FeedServer) -> None:
    from prevent.feeds.fetch import new_client

    from .conftest import watcher_settings

    settings = watcher_settings(tmp_path, feed_max_body_bytes=4096)
    big = rss(*[(f"g{i}", "x" * 200) for i in range(200)])
    # Chunked (no Content-Length): the cap must hold while streaming, not only on the header.
    feed_server.routes["/big"] = lambda req: (200, {"Transfer-Encoding": "chunked"}, _chunked(big))
    feed_server.routes["/bomb"] = lambda req: (200, {"Content-Encoding": "gzip"}, gzip.compress(big))
    async with new_client(settings) as client:
        rig = Rig(db, settings, client)
        out = Collector()
        watcher = rig.watcher([rss_feed("big", feed_server.url("/big")),
                               rss_feed("bomb", feed_server.url("/bomb"))], out)
        outcomes = await watcher.poll_all()
    assert [o.error.split(":")[0] for o in outcomes if o.error] == ["too_large", "too_large"]
    assert out.published == []


def _chunked(body: bytes, size: int = 1024) -> list[bytes]:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts] + [b"0\r\n\r\n"]


async def test_loopback_is_refused_unless_allowed(db, tmp_path, feed_server: FeedServer) -> None:
    from prevent.feeds.fetch import new_client

    from .conftest import watcher_settings

    feed_server.routes["/feed.xml"] = lambda req: (200, {}, rss(*ITEMS))
    settings = watcher_settings(tmp_path, allow_private_addresses=False)
    async with new_client(settings) as client:
        outcome = await Rig(db, settings, client).watcher(
            [rss_feed("internal", feed_server.url("/feed.xml"))]).poll("internal")
    assert outcome.error and outcome.error.startswith("refused:")
    assert feed_server.requests == []  # refused before connecting


# ------------------------------------------------------------------ hostile and odd documents

# The same hostile document the parser's tests use, served over HTTP this time.


async def test_entity_expansion_and_external_entities_do_neither(rig: Rig, feed_server: FeedServer) -> None:
    secret_url = feed_server.url("/secret")
    xxe = (f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY x SYSTEM "{secret_url}">\n'
           f'<!ENTITY % p SYSTEM "{secret_url}"> %p;\n]>\n'
           '<rss version="2.0"><channel><title>t</title>'
           '<item><title>leak &x; end</title><guid>xxe-1</guid></item></channel></rss>').encode()
    feed_server.routes["/laughs.xml"] = lambda req: (200, {"Content-Type": "application/rss+xml"},
                                                     BILLION_LAUGHS)
    feed_server.routes["/xxe.xml"] = lambda req: (200, {"Content-Type": "application/rss+xml"}, xxe)
    feed_server.routes["/secret"] = lambda req: (200, {}, b"TOP-SECRET")
    out = Collector()
    watcher = rig.watcher([rss_feed("laughs", feed_server.url("/laughs.xml")),
                           rss_feed("xxe", feed_server.url("/xxe.xml"))], out)
    await watcher.poll_all()
    assert feed_server.hits("/secret") == []  # the external entity was never fetched
    for incident in out.published:
        assert "TOP-SECRET" not in incident.title + incident.summary
        assert "AAAAAAAAAAAAAAAAAAAA" not in incident.title + incident.summary
        assert len(incident.summary) < 1000


async def test_wrong_declared_encoding_html_in_titles_and_missing_dates(rig: Rig,
                                                                       feed_server: FeedServer) -> None:
    latin1 = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
              '<item><guid>enc-1</guid><title>São Paulo: protesto em frente à mesquita</title></item>'
              '</channel></rss>').encode("latin-1")
    html = rss(("h-1", "&lt;b&gt;Church&lt;/b&gt; fire &lt;script&gt;alert(1)&lt;/script&gt;"),
               pub_date=None)
    feed_server.routes["/latin1.xml"] = lambda req: (200, {"Content-Type": "application/rss+xml"}, latin1)
    feed_server.routes["/html.xml"] = lambda req: (200, {}, html)
    out = Collector()
    before = utcnow()
    await rig.watcher([rss_feed("latin1", feed_server.url("/latin1.xml")),
                       rss_feed("html", feed_server.url("/html.xml"))], out).poll_all()
    by_feed = {i.feed_id: i for i in out.published}
    assert by_feed["latin1"].title == "São Paulo: protesto em frente à mesquita"
    assert by_feed["html"].title == "Church fire"  # tags and script content removed
    # No date in the entry: the time it was first seen, in UTC.
    assert by_feed["html"].published >= before - timedelta(seconds=1)
    assert by_feed["html"].published.utcoffset() == timedelta(0)


# ------------------------------------------------------------------ dedupe, updates, restart


async def test_duplicate_guids_across_polls_and_updates(rig: Rig, feed_server: FeedServer) -> None:
    bodies = [rss(*ITEMS), rss(("a-2", ITEMS[1][1]), ("a-1", ITEMS[0][1]), ("a-3", "Temple vandalised")),
              rss(("a-1", "Mosque attacked in city centre: 3 injured"), ("a-3", "Temple vandalised"))]
    feed_server.routes["/d.xml"] = lambda req: (200, {}, bodies[min(len(feed_server.hits("/d.xml")) - 1, 2)])
    out = Collector()
    watcher = rig.watcher([rss_feed("dupes", feed_server.url("/d.xml"))], out)
    counts = [(await watcher.poll("dupes")).published for _ in range(3)]
    assert counts == [2, 1, 1]
    ids = [i.incident_id for i in out.published]
    assert ids[3] == ids[0]  # the changed entry is an update of the same incident
    assert out.published[3].content_hash != out.published[0].content_hash


async def test_restart_does_not_re_emit(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/r.xml"] = lambda req: (200, {}, rss(*ITEMS))
    feed = rss_feed("restart", feed_server.url("/r.xml"))
    first, second = Collector(), Collector()
    await rig.watcher([feed], first).poll("restart")
    await rig.watcher([feed], second).poll("restart")  # a new process on the same database
    assert len(first.published) == 2
    assert second.published == []


async def test_memory_only_broker_publishes_again_what_was_never_stored(
        rig: Rig, feed_server: FeedServer) -> None:
    """Tansu dies with the process: an entry seen (acknowledged) but never stored by the rules
    stage is published again at the next start, from its kept copy, even when the feed no
    longer lists it; a stored one is not, and its copy is dropped."""
    feed_server.routes["/m.xml"] = lambda req: (200, {}, rss(*ITEMS))
    feed = rss_feed("memory", feed_server.url("/m.xml"))
    first = Collector()
    assert (await rig.watcher([feed], first, replay_unstored=True).poll("memory")).published == 2
    stored, lost = first.published
    async with rig.db.transaction() as session:  # the rules stage stored one before the crash
        session.add(IncidentRow(incident_id=stored.incident_id, content_hash=stored.content_hash,
                                feed_id=stored.feed_id, cluster_id=None, title=stored.title,
                                published_at=stored.published, received_at=utcnow(),
                                payload=stored.model_dump(mode="json"), classification=None))
    feed_server.routes["/m.xml"] = lambda req: (200, {}, rss())  # the feed moved on meanwhile
    second = Collector()
    restarted = rig.watcher([feed], second, replay_unstored=True)
    await restarted.start()
    restarted.stop()
    assert second.published == [lost]
    async with rig.db.transaction() as session:
        kept = dict((await session.execute(select(SeenEntry.incident_id, SeenEntry.payload))).all())
    assert kept[stored.incident_id] is None and kept[lost.incident_id] is not None
    assert await rig.watcher([feed], Collector(), replay_unstored=True).replay() == 1  # until stored


async def test_durable_broker_keeps_no_copy(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/k.xml"] = lambda req: (200, {}, rss(*ITEMS))
    await rig.watcher([rss_feed("kafka", feed_server.url("/k.xml"))]).poll("kafka")
    async with rig.db.transaction() as session:
        assert set((await session.execute(select(SeenEntry.payload))).scalars()) == {None}


async def test_nothing_is_seen_until_publish_succeeds(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/p.xml"] = lambda req: (200, {"ETag": '"p1"'}, rss(*ITEMS))
    published: list[str] = []
    failures = {"left": 100}

    async def flaky(incident) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("broker unreachable")
        published.append(incident.incident_id)

    watcher = rig.watcher([rss_feed("flaky", feed_server.url("/p.xml"))], flaky, publish_attempts=3)
    outcome = await watcher.poll("flaky")
    assert outcome.error and outcome.error.startswith("publish:")
    async with rig.db.transaction() as session:
        assert (await session.execute(select(SeenEntry))).scalars().all() == []
    state = await state_of(rig, "flaky")
    assert state.etag is None  # a 304 next time would hide the unpublished entries
    assert state.consecutive_errors == 0  # the broker's fault, not the feed's

    failures["left"] = 2  # the broker comes back after two more failures: retried with backoff
    outcome = await watcher.poll("flaky")
    assert outcome.published == 2 and outcome.error is None
    assert len(published) == 2
    assert (await watcher.poll("flaky")).published == 0  # now seen


async def test_retention_prunes_old_seen_entries(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/old.xml"] = lambda req: (200, {}, rss(*ITEMS))
    watcher = rig.watcher([rss_feed("old", feed_server.url("/old.xml"))])
    await watcher.poll("old")
    assert await watcher.prune_seen(now=utcnow() + timedelta(days=10)) == 0
    assert await watcher.prune_seen(now=utcnow() + timedelta(days=31)) == 2


# ------------------------------------------------------------------ isolation, backoff, disable


async def test_a_stalling_feed_does_not_delay_a_good_one(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/slow"] = lambda req: (200, {"Content-Length": "5000"}, [b"<rss", Stall(10)])
    feed_server.routes["/good"] = lambda req: (200, {}, rss(*ITEMS))
    good_done = asyncio.Event()

    async def publish(incident) -> None:
        good_done.set()

    watcher = rig.watcher([rss_feed("slow", feed_server.url("/slow")),
                           rss_feed("good", feed_server.url("/good"))], publish)
    both = asyncio.ensure_future(watcher.poll_all())
    await asyncio.wait_for(good_done.wait(), timeout=2)  # long before the slow feed's deadline
    assert not both.done()
    outcomes = {o.feed_id: o for o in await both}
    assert outcomes["good"].published == 2
    assert outcomes["slow"].error and outcomes["slow"].error.startswith("timeout")


async def test_errors_back_off_then_auto_disable(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/broken"] = lambda req: (500, {}, b"oops")
    watcher = rig.watcher([rss_feed("broken", feed_server.url("/broken"))])
    waits = [(await watcher.poll("broken")).next_in
             for _ in range(rig.settings.feed_max_consecutive_errors)]
    assert waits[:4] == [60, 120, 240, 480]
    assert waits[-1] is None
    state = await state_of(rig, "broken")
    assert state.disabled_reason and "12 consecutive errors" in state.disabled_reason
    assert "http_5xx" in state.disabled_reason
    again = await watcher.poll("broken")
    assert again.disabled and len(feed_server.hits("/broken")) == 12  # not polled any more


async def test_gone_disables_at_once(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/gone"] = lambda req: (410, {}, b"")
    outcome = await rig.watcher([rss_feed("gone", feed_server.url("/gone"))]).poll("gone")
    assert outcome.disabled
    assert "HTTP 410" in (await state_of(rig, "gone")).disabled_reason


async def test_scheduler_runs_one_job_per_feed_and_moves_it(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/s.xml"] = lambda req: (200, {"Cache-Control": "max-age=600"}, rss(*ITEMS))
    out = Collector()
    watcher = rig.watcher([rss_feed("s1", feed_server.url("/s.xml")),
                           rss_feed("s2", feed_server.url("/s.xml"), enabled=False)], out,
                          startup_spread=0)
    await watcher.start()
    try:
        for _ in range(100):
            if len(out.published) == 2:
                break
            await asyncio.sleep(0.1)
        job = watcher.scheduler.get_job("s1")
        assert watcher.scheduler.get_job("s2") is None
        assert job.coalesce and job.max_instances == 1
        await asyncio.sleep(0.2)
        assert job.next_run_time - utcnow() > timedelta(seconds=590)  # max-age honoured
    finally:
        watcher.stop()
    assert len(out.published) == 2


async def test_sync_picks_up_registry_edits_and_re_enabled_feeds(rig: Rig, feed_server: FeedServer) -> None:
    from prevent.feeds.manage import clear_auto_disable

    feed_server.routes["/gone"] = lambda req: (410, {}, b"")
    registry = [rss_feed("gone", feed_server.url("/gone"))]
    watcher = rig.watcher(registry, reload=lambda: list(registry), startup_spread=0)
    await watcher.start()
    try:
        assert (await watcher.poll("gone")).disabled
        assert watcher.scheduler.get_job("gone") is None
        registry.append(rss_feed("added", feed_server.url("/gone")))
        await clear_auto_disable(rig.db, "gone")
        await watcher.sync()
        assert {j.id for j in watcher.scheduler.get_jobs()} >= {"gone", "added"}
    finally:
        watcher.stop()


async def test_aclose_lets_a_poll_under_way_finish_and_a_cancelled_one_ends_quietly(
        rig: Rig, feed_server: FeedServer, monkeypatch, caplog) -> None:
    """`prevent up` stopping (SIGINT) while scheduled polls run: aclose() lets them finish for
    STOP_SECONDS; APScheduler's shutdown then cancels one still running, which ends with an
    INFO line and not APScheduler's ERROR traceback (a clean-clone CI run failed on that
    traceback: shutdown(wait=False) cancelled every poll under way at once)."""
    import logging

    from prevent.feeds import watcher as watcher_module

    feed_server.routes["/slow.xml"] = lambda req: (200, {"Content-Length": "5000"}, [b"<rss", Stall(0.2)])
    feed_server.routes["/stuck.xml"] = lambda req: (200, {"Content-Length": "5000"}, [b"<rss", Stall(30)])
    watcher = rig.watcher([rss_feed("slow", feed_server.url("/slow.xml")),
                           rss_feed("stuck", feed_server.url("/stuck.xml"))], Collector(), startup_spread=0)
    monkeypatch.setattr(watcher_module, "STOP_SECONDS", 0.8)  # under the fetch timeout
    await watcher.start()
    for _ in range(100):  # both scheduled polls under way
        if len(watcher._jobs) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(watcher._jobs) == 2
    with caplog.at_level(logging.INFO):
        started = asyncio.get_running_loop().time()
        await watcher.aclose()
        waited = asyncio.get_running_loop().time() - started
    assert 0.75 < waited < 5, waited  # STOP_SECONDS for the stuck poll, then its cancellation
    assert not watcher._jobs
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    cancelled = [r.getMessage() for r in caplog.records if "cancelled by the shutdown" in r.getMessage()]
    assert cancelled == ["_scheduled_poll stuck cancelled by the shutdown; the next start repeats it"]
    slow = await state_of(rig, "slow")
    assert slow.last_error  # the slow poll ended (its body cut short) and its state was written
