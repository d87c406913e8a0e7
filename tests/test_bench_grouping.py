"""The pair counting of ``bench/grouping.py`` (grouping across languages, issue 21 5(c)) on a
tiny example: no file, no model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "grouping.py"


@pytest.fixture(scope="module")
def grouping() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_grouping", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Event A in three languages; event B twice; one item of no labelled event.
ITEMS = [{"id": "a1", "event": "A", "published": "2024-06-18"},
         {"id": "a2", "event": "A", "published": "2024-06-18"},
         {"id": "a3", "event": "A", "published": "2024-06-19"},
         {"id": "b1", "event": "B", "published": "2024-06-18"},
         {"id": "b2", "event": "B", "published": "2024-06-18"},
         {"id": "x", "published": "2024-09-01"}]
# a1, a2 joined; a3 names no community (missed, cannot be joined); b1, b2 missed though both
# name a community; x wrongly joined to event A's cluster.
GROUPED = [{"id": "a1", "communities": ["jewish"], "country": "FR", "cluster": "c1"},
           {"id": "a2", "communities": ["jewish"], "country": "FR", "cluster": "c1"},
           {"id": "a3", "communities": [], "country": "FR", "cluster": "c2"},
           {"id": "b1", "communities": ["jewish"], "country": "FR", "cluster": "c3"},
           {"id": "b2", "communities": ["jewish", "israeli"], "country": "FR", "cluster": "c4"},
           {"id": "x", "communities": ["muslim"], "country": "DE", "cluster": "c1"}]


def test_pairs_are_sorted_by_what_grouping_did(grouping: ModuleType) -> None:
    p = grouping.pairs(ITEMS, GROUPED)
    assert p["joined"] == [("a1", "a2")]
    assert p["missed"] == [("a1", "a3"), ("a2", "a3"), ("b1", "b2")]
    assert p["missed_with_community"] == [("b1", "b2")]
    assert p["false_joins"] == [("a1", "x"), ("a2", "x")]
    # jewish on a1, a2, b1, b2: the four A-B pairs; x shares no community with anyone
    assert p["different_sharing_community"] == [("a1", "b1"), ("a1", "b2"), ("a2", "b1"), ("a2", "b2")]


def test_counts(grouping: ModuleType) -> None:
    c = grouping.counts(ITEMS, GROUPED)
    assert c == {"items": 6, "events": 2, "same_event_pairs": 4, "joined": 1, "missed": 3,
                 "missed_with_community": 1, "missed_pairs_with_community": [["b1", "b2"]],
                 "false_joins": 2, "different_sharing_community": 4}


def test_items_without_an_event_are_events_of_their_own(grouping: ModuleType) -> None:
    items = [{"id": "p"}, {"id": "q"}]
    grouped = [{"id": "p", "communities": ["sikh"], "cluster": "c"},
               {"id": "q", "communities": ["sikh"], "cluster": "c"}]
    c = grouping.counts(items, grouped)
    assert (c["same_event_pairs"], c["false_joins"], c["different_sharing_community"]) == (0, 1, 1)


def test_window_and_country(grouping: ModuleType) -> None:
    assert grouping.within_window(ITEMS, ("a1", "a3"))  # a day apart
    assert not grouping.within_window(ITEMS, ("a1", "x"))  # months apart
    assert grouping.within_window([{"id": "u"}, {"id": "v", "published": "2024-01-01"}], ("u", "v")) is False
    assert grouping.same_country(GROUPED, ("a1", "b1"))
    assert not grouping.same_country(GROUPED, ("a1", "x"))


def test_price_of_a_threshold(grouping: ModuleType) -> None:
    scored = grouping.Scored
    rescuable = [scored("s", ("b1", "b2"), 0.86), scored("s", ("c1", "c2"), 0.9)]
    different = [scored("s", ("a1", "b1"), 0.95, True, False),
                 scored("s", ("a1", "b2"), 0.87, True, True),
                 scored("s", ("a2", "b1"), 0.86, False, True),
                 scored("s", ("a2", "b2"), 0.5, True, True)]
    out = grouping.price(rescuable, different)
    assert out["threshold"] == 0.86
    assert (out["at_or_above"], out["at_or_above_same_country"], out["at_or_above_within_window"],
            out["at_or_above_same_country_within_window"]) == (3, 2, 2, 1)
    assert [r["at_or_above"] for r in out["rescuable"]] == [3, 1]
    assert out["highest_different"]["pair"] == ["a1", "b1"]
    assert (out["different_sharing_community"], out["different_same_country"],
            out["different_within_window"]) == (4, 3, 3)
    assert "threshold" not in grouping.price([], different)
