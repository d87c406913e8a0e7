"""Synthetic but realistic inputs for the benchmarks: incidents, 50 playbooks, 500 sites."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import yaml

from prevent.contracts import GlobalIncident, stable_id, utcnow

REPO = Path(__file__).resolve().parent.parent
EVAL_SET = REPO / "tests" / "data" / "incidents-eval.jsonl"
FAITHS = ["muslim", "jewish", "christian", "sikh", "hindu", "buddhist"]
DIVERSITY = ["lgbtq", "black", "asian", "indigenous", "south-asian", "east-asian"]
TYPES = [["armed_attack", "bombing"], ["arson", "vandalism"], ["hate_crime", "armed_attack"],
         ["riot"], ["natural_disaster"], ["terror_threat"]]


def eval_items() -> list[dict]:
    return [json.loads(line) for line in EVAL_SET.read_text().splitlines() if line.strip()]


def incidents(n: int, *, tag: str) -> list[GlobalIncident]:
    """``n`` distinct incidents cycling through the labelled set, published just now. A title
    repeats as outlets repeat a story; the number that keeps it distinct is not a word, so it
    adds nothing that every title would share (which no real burst has)."""
    items = eval_items()
    now = utcnow()
    out = []
    for i in range(n):
        item = items[i % len(items)]
        published = now - timedelta(minutes=i % 600)
        title = f"{item['title']} (#{i})"
        out.append(GlobalIncident(
            incident_id=stable_id("inc", tag, i), feed_id=f"bench-{i % 40}", kind="rss",
            title=title, summary=item.get("summary", ""), published=published, first_seen=now,
            content_hash=stable_id("h", tag, i)))
    return out


def playbook_variants(n: int = 50) -> list[dict]:
    """``n`` playbooks as a unit would write them: one per community and scenario."""
    communities = FAITHS + DIVERSITY
    variants = []
    for i in range(n):
        community = communities[i % len(communities)]
        scenario = (i // len(communities)) % len(TYPES)
        variants.append({
            "id": f"bench-{i:02d}-{community}", "title": f"Benchmark playbook {i}", "owner": "bench",
            "priority": i % 100,
            "match": {
                "communities": {"any": [community]},
                "incident_types": TYPES[scenario],
                "min_severity": 2 + i % 3,
                "countries": {"exclude": ["CA"]} if i % 5 == 0 else {},
                "keywords": {"none": ["exercise"]} if i % 3 == 0 else {},
                "max_age_hours": 72,
            },
            "response": {
                "confirmation": {"mode": "required", "auto_at_severity": 4},
                "notify": [{"communities": ["$matched"], "channels": ["email"]}],
                "patrol": {"every_minutes": 120, "duration_hours": 24},
            },
        })
    return variants


def playbooks_dir(target: Path, n: int = 50) -> Path:
    """A playbooks directory: the real lexicon and templates, ``n`` generated playbooks."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("communities.yaml", "incident_types.yaml"):
        shutil.copy(REPO / "playbooks" / name, target / name)
    shutil.copytree(REPO / "playbooks" / "templates", target / "templates", dirs_exist_ok=True)
    for playbook in playbook_variants(n):
        (target / f"{playbook['id']}.yaml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    return target


def registry_file(target: Path, sites: int = 500) -> Path:
    """A fictional registry of ``sites`` sites with one consenting contact each."""
    communities = FAITHS + DIVERSITY
    data = {
        "zones": [{"zone_id": f"zone-{z}", "name": f"Zone {z}"} for z in range(10)],
        "sites": [{
            "site_id": f"site-{i}", "name": f"Sample site {i}", "kind": "place_of_worship",
            "communities": [communities[i % len(communities)]], "municipality": f"Town {i % 20}",
            "zone_id": f"zone-{i % 10}",
            "contacts": [{"contact_id": f"contact-{i}", "name": f"Contact {i}",
                          "email": f"contact{i}@example.org", "channels": ["email"],
                          "consent": True}],
        } for i in range(sites)],
    }
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target
