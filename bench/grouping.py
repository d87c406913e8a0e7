"""One event across languages: how well grouping joins the reports of one event, and whether
the semantic layer's model would join them better (issue 21, point 5(c)).

``python -m bench.grouping [--no-model]`` prints one JSON object.

Grouping (``prevent/rules/grouping.py``) is lexical: a report joins a cluster of one of its
communities when the titles share enough words, or when country and incident type agree
within 24 hours. The labelled multilingual sets give each report of a real event an ``event``
key, one event being reported in several languages; an item without one is an event of its
own. Each set is replayed as ``prevent classify --group`` replays a file (lexicon path, the
semantic layer off), and every pair of items is counted:

* same-event pairs joined in one cluster, and those missed; of the missed, how many have a
  community on both items: only those can be joined at all (grouping needs a shared
  community; a report that names no community raises no alert, so it is not grouped);
* false joins: pairs of different events in one cluster.

With the model installed (``prevent[semantic]``), it is asked whether it would rescue the
missed pairs that can be joined, at what price: the cosine similarity of their titles (the
titles are what grouping compares) against the similarities of different-event pairs that
share a community, the ones grouping could join. A threshold low enough to join a missed pair
joins every different-event pair at or above it; counted in any country, in the same country
(grouping's other test), and in the same country within grouping's 48-hour window (the sets
span years; a live stream holds only the window, so that count is the nearest to the price
in service). The model earns its place in grouping only if its similarity separates events:
the missed pairs above the different-event pairs of the same community and country. The
figures measured and the decision: docs/CLASSIFICATION.md, "One event across languages".
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from prevent.rules.grouping import TITLE_WINDOW as WINDOW  # no join further apart

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {"multilingual dev (shared)": SHARED / "incidents-multilingual-dev.jsonl",
        "multilingual held-out 3": ROOT / "tests" / "data" / "incidents-multilingual-holdout3.jsonl",
        "multilingual held-out 4": ROOT / "tests" / "data" / "incidents-multilingual-holdout4.jsonl",
        "multilingual held-out 5": ROOT / "tests" / "data" / "incidents-multilingual-holdout5.jsonl"}

Pair = tuple[str, str]


def _event(item: dict[str, Any]) -> str:
    """The item's event; an item without one is an event of its own."""
    return f"event:{item['event']}" if item.get("event") else f"item:{item['id']}"


def pairs(items: Sequence[dict[str, Any]], grouped: Sequence[dict[str, Any]]
          ) -> dict[str, list[Pair]]:
    """Every pair of ``items`` (labelled: ``id``, optional ``event``) sorted by what grouping
    did with it. ``grouped``: one dict per item, by ``id``, as ``prevent classify --group``
    prints it (``communities``, ``country``, ``cluster``). Pure: no file, no model.

    Out, lists of (id, id) pairs: ``joined`` (same event, one cluster), ``missed`` (same
    event, apart), ``missed_with_community`` (of those, a community on both items),
    ``false_joins`` (different events, one cluster), ``different_sharing_community``
    (different events sharing a community: what grouping could join)."""
    by_id = {g["id"]: g for g in grouped}
    out: dict[str, list[Pair]] = {k: [] for k in ("joined", "missed", "missed_with_community",
                                                  "false_joins", "different_sharing_community")}
    ordered = sorted(items, key=lambda i: str(i["id"]))
    for a, b in itertools.combinations(ordered, 2):
        ga, gb = by_id[a["id"]], by_id[b["id"]]
        pair = (str(a["id"]), str(b["id"]))
        together = ga.get("cluster") is not None and ga.get("cluster") == gb.get("cluster")
        ca, cb = set(ga.get("communities") or ()), set(gb.get("communities") or ())
        if _event(a) == _event(b):
            if together:
                out["joined"].append(pair)
            else:
                out["missed"].append(pair)
                if ca and cb:
                    out["missed_with_community"].append(pair)
        else:
            if together:
                out["false_joins"].append(pair)
            if ca & cb:
                out["different_sharing_community"].append(pair)
    return out


def counts(items: Sequence[dict[str, Any]], grouped: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one set (:func:`pairs`, counted), with the missed pairs that can be
    joined named."""
    p = pairs(items, grouped)
    return {"items": len(items), "events": len({_event(i) for i in items if i.get("event")}),
            "same_event_pairs": len(p["joined"]) + len(p["missed"]), "joined": len(p["joined"]),
            "missed": len(p["missed"]), "missed_with_community": len(p["missed_with_community"]),
            "missed_pairs_with_community": [list(x) for x in p["missed_with_community"]],
            "false_joins": len(p["false_joins"]),
            "different_sharing_community": len(p["different_sharing_community"])}


def same_country(grouped: Sequence[dict[str, Any]], pair: Pair) -> bool:
    """Whether grouping gave both items the same country."""
    by_id = {g["id"]: g for g in grouped}
    a, b = by_id[pair[0]].get("country"), by_id[pair[1]].get("country")
    return bool(a) and a == b


def _published(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def within_window(items: Sequence[dict[str, Any]], pair: Pair, window: timedelta = WINDOW) -> bool:
    """Whether the two items were published within ``window`` of each other (grouping joins
    nothing further apart); an item without a date is not."""
    by_id = {i["id"]: i for i in items}
    a, b = _published(by_id[pair[0]].get("published")), _published(by_id[pair[1]].get("published"))
    return a is not None and b is not None and abs(a - b) <= window


class Scored(NamedTuple):
    """A pair of one set with its title similarity; for a different-event pair, whether
    grouping gave both the same country and whether they are within grouping's window."""

    set: str
    pair: Pair
    similarity: float
    same_country: bool = False
    within_window: bool = False


def price(rescuable: Sequence[Scored], different: Sequence[Scored]) -> dict[str, Any]:
    """What rescuing missed pairs by title similarity would cost. ``rescuable``: each missed
    same-event pair with a community on both; ``different``: each different-event pair
    sharing a community. Pure.

    Per rescuable pair, and at the lowest of their similarities (the threshold that rescues
    them all): how many different-event pairs score at or above it, in any country, in the
    same country, and in the same country within grouping's window."""

    def above(threshold: float) -> dict[str, int]:
        hits = [d for d in different if d.similarity >= threshold]
        return {"at_or_above": len(hits),
                "at_or_above_same_country": sum(1 for d in hits if d.same_country),
                "at_or_above_within_window": sum(1 for d in hits if d.within_window),
                "at_or_above_same_country_within_window":
                    sum(1 for d in hits if d.same_country and d.within_window)}

    out: dict[str, Any] = {
        "rescuable": [{"set": r.set, "pair": list(r.pair), "similarity": round(r.similarity, 3)}
                      | above(r.similarity) for r in rescuable],
        "different_sharing_community": len(different),
        "different_same_country": sum(1 for d in different if d.same_country),
        "different_within_window": sum(1 for d in different if d.within_window)}
    if different:
        top = max(different, key=lambda d: d.similarity)
        out["highest_different"] = {"set": top.set, "pair": list(top.pair),
                                    "similarity": round(top.similarity, 3),
                                    "same_country": top.same_country, "within_window": top.within_window}
    if rescuable:
        threshold = min(r.similarity for r in rescuable)
        out["threshold"] = round(threshold, 3)
        out.update(above(threshold))
    return out


def _load(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines, [json.loads(line) for line in lines]


def _group(lines: list[str]) -> list[dict[str, Any]]:
    """The set replayed as ``prevent classify --group`` replays it, the semantic layer off."""
    from prevent.cli.classify_commands import classify_lines
    from prevent.platform.config import get_settings

    return [json.loads(out) for out in classify_lines(lines, get_settings(), group=True, semantic=False)]


def _similarities(embed: Callable[[list[str]], Any], items: Sequence[dict[str, Any]]
                  ) -> Callable[[Pair], float]:
    """Cosine similarity of two items' titles (the embedder's rows are L2-normalised)."""
    rows = embed([str(i.get("title") or "") for i in items])
    index = {i["id"]: k for k, i in enumerate(items)}
    return lambda pair: float(rows[index[pair[0]]] @ rows[index[pair[1]]])


def run(with_model: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"sets": {}, "absent": [name for name, path in SETS.items() if not path.is_file()]}
    loaded = {name: _load(path) for name, path in SETS.items() if path.is_file()}
    grouped = {name: _group(lines) for name, (lines, _) in loaded.items()}
    for name, (_, items) in loaded.items():
        out["sets"][name] = counts(items, grouped[name])
    from prevent.classification.semantic import DEFAULT_MODEL, load_embedder, model_available

    if not with_model:
        out["model"] = {"installed": False, "skipped": True}
        return out
    embedder = load_embedder(True, DEFAULT_MODEL) if model_available(DEFAULT_MODEL) else None
    if embedder is None:
        out["model"] = {"installed": False}
        return out
    rescuable: list[Scored] = []
    different: list[Scored] = []
    for name, (_, items) in loaded.items():
        sim = _similarities(embedder.queries, items)
        p = pairs(items, grouped[name])
        rescuable += [Scored(name, pair, sim(pair)) for pair in p["missed_with_community"]]
        different += [Scored(name, pair, sim(pair), same_country(grouped[name], pair),
                             within_window(items, pair))
                      for pair in p["different_sharing_community"]]
    out["model"] = {"installed": True, "name": getattr(embedder, "name", DEFAULT_MODEL), "text": "title",
                    "window_hours": WINDOW.total_seconds() / 3600}
    out["model"] |= price(rescuable, different)
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--no-model" not in sys.argv), indent=2, ensure_ascii=False))
