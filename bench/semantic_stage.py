"""The rules stage's throughput with the semantic layer on (issue 21's bar: "with the semantic
layer on, the rules stage keeps up with >= 50 items/s"), on incident-dense input.

The real stage, end to end: `running_system` with the rules service only (the embedded
broker, SQLite, the real playbooks, lexicons and exemplars, 500 partner sites),
``PREVENT_SEMANTIC`` on, with ``PREVENT_RULES_WORKERS`` = 1 (the default), then 2: each
worker a process with its own model, embedding on ``PREVENT_SEMANTIC_THREADS`` threads
(default 2; the bench passes the variable through). The incident-dense corpus (the shared
multilingual set, or the first multilingual held-out set present: ``bench.languages``) is
published as one burst
of incidents, each with its declared language and country, ``passes`` times over (distinct
ids); the figure is wall-clock: from the first record published until every incident is
stored, divided into their number. Not timed: the workers loading the model and embedding
the exemplars (the bench waits until their CPU time stands still, then one item goes
through the stage first).

``python -m bench.semantic_stage [PASSES] [WORKERS ...]`` prints one JSON object.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.fixtures import registry_file
from bench.languages import DENSE_CANDIDATES, ROOT, SETS, _load
from bench.throughput import publish_burst, stored
from prevent.cli.services import running_system
from prevent.contracts import INCIDENTS, GlobalIncident, Location, stable_id, utcnow
from prevent.partners.registry import apply_registry, parse_registry
from prevent.platform.config import Settings
from prevent.platform.storage.tables import IncidentRow

WARM_LIMIT_S = 300  # the workers load the model and embed the exemplars (10-30 s each)
STILL_S = 2.0  # a worker whose CPU time has not moved this long has finished loading


def dense_corpus() -> tuple[str, list[dict[str, Any]]] | None:
    for name in DENSE_CANDIDATES:
        if SETS[name].is_file():
            return name, _load(SETS[name])
    return None


def incidents_of(items: list[dict[str, Any]], passes: int, tag: str) -> list[GlobalIncident]:
    """The corpus ``passes`` times over as incidents: its titles, ledes, declared languages and
    countries, published just now, each with its own id (nothing is deduplicated)."""
    now = utcnow()
    out = []
    for p in range(passes):
        for n, item in enumerate(items):
            i = p * len(items) + n
            country = item.get("country")
            out.append(GlobalIncident(
                incident_id=stable_id("inc", tag, i), feed_id=f"bench-{i % 40}", kind="rss",
                title=item["title"], summary=item.get("summary", ""), language=item.get("lang"),
                location=Location(country=country) if country else None,
                published=now - timedelta(minutes=i % 600), first_seen=now,
                content_hash=stable_id("h", tag, i)))
    return out


def _workers() -> list[int]:
    """This process's preparation workers (spawned ``multiprocessing`` children, not the
    resource tracker)."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"multiprocessing" in cmd and b"resource_tracker" not in cmd:
                found.append(int(pid))
    return found


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1
    return int(fields[11]) + int(fields[12])  # utime + stime


async def _workers_loaded(n: int) -> float:
    """Wait until ``n`` preparation workers exist and their CPU time stands still; seconds."""
    started = time.perf_counter()
    last: dict[int, int] = {}
    still_since = time.perf_counter()
    while time.perf_counter() - started < WARM_LIMIT_S:
        now = {pid: _cpu_ticks(pid) for pid in _workers()}
        if now != last:
            last, still_since = now, time.perf_counter()
        elif len(now) >= n and time.perf_counter() - still_since >= STILL_S:
            break
        await asyncio.sleep(0.25)
    return round(time.perf_counter() - started - STILL_S, 1)


async def _until_stored(system: Any, n: int, pause: float) -> int:
    """Poll the incidents table (SQLite: no notification) until ``n`` are stored."""
    while True:
        count = await stored(system, IncidentRow)
        if count >= n:
            return count
        await asyncio.sleep(pause)


async def measure(workers: int, items: list[dict[str, Any]], passes: int, work: Path) -> dict[str, Any]:
    pb = work / "playbooks"
    shutil.copytree(ROOT / "playbooks", pb, ignore=shutil.ignore_patterns("tests"))
    settings = Settings(var_dir=work / "var", playbooks_dir=pb, demo=False, secret_key="bench",
                        semantic=True, rules_workers=workers)
    burst = incidents_of(items, passes, tag=f"semantic-stage-{workers}")
    warm = incidents_of(items[:1], 1, tag=f"semantic-stage-warm-{workers}")
    async with running_system(settings, services=("rules",), feeds=[], demo=False) as system:
        async with system.ctx.db.transaction() as session:
            await apply_registry(session, parse_registry(registry_file(work / "sites.yaml")))
        loaded_s = await _workers_loaded(workers)
        procs = len(_workers())
        await publish_burst(system.bootstrap, INCIDENTS.name, warm)  # the consumer has joined
        await _until_stored(system, 1, 0.1)
        pids = _workers()
        ticks, own, load = sum(map(_cpu_ticks, pids)), os.times(), os.getloadavg()[0]
        started = time.perf_counter()
        await publish_burst(system.bootstrap, INCIDENTS.name, burst)
        count = await _until_stored(system, 1 + len(burst), 0.05)
        elapsed = time.perf_counter() - started
        workers_cpu = (sum(map(_cpu_ticks, pids)) - ticks) / os.sysconf("SC_CLK_TCK")
        consumer_cpu = sum(os.times()[:2]) - sum(own[:2])
    return {"workers": workers, "worker_processes_seen": procs, "incidents": len(burst),
            "seconds": round(elapsed, 2), "items_per_s": round(len(burst) / elapsed, 1),
            "stored": count - 1, "workers_loaded_s": loaded_s,
            # CPU the workers and this process (the consumer, the bench's polling) used in the
            # timed window, and the machine's 1-minute load before it: on a shared machine,
            # how much of the two cores the stage had.
            "workers_cpu_s": round(workers_cpu, 1), "consumer_cpu_s": round(consumer_cpu, 1),
            "loadavg_1min_before": round(load, 2)}


def model_reads(items: list[dict[str, Any]]) -> int:
    """How many of ``items`` the model reads (``needs_model`` on the lexicon's classification)."""
    from prevent.classification import Classifier
    from prevent.classification.semantic import needs_model

    clf = Classifier.from_dir(ROOT / "playbooks")
    langs = frozenset(clf.languages)
    return sum(needs_model(clf.classify(i["title"], i.get("summary", ""), country=i.get("country"),
                                        lang=i.get("lang")), langs) for i in items)


async def run(passes: int = 3, workers: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    from prevent.classification.semantic import DEFAULT_MODEL, model_available

    if not model_available(DEFAULT_MODEL):
        return {"installed": False}
    corpus = dense_corpus()
    if corpus is None:
        return {"installed": True, "corpus": None}
    name, items = corpus
    out: dict[str, Any] = {"installed": True, "corpus": f"incident-dense: {name}", "items": len(items),
                           "passes": passes, "model_read": model_reads(items), "cores": os.cpu_count(),
                           "runs": {}}
    for n in workers:
        with tempfile.TemporaryDirectory() as tmp:
            out["runs"][str(n)] = await measure(n, items, passes, Path(tmp))
    return out


if __name__ == "__main__":
    import json
    import logging
    import sys

    logging.basicConfig(level=logging.ERROR)
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(asyncio.run(run(args[0] if args else 3, tuple(args[1:]) or (1, 2))), indent=2))
