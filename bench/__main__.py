"""`make bench`: every benchmark in one run on this machine; a table in docs/PERFORMANCE.md
and the raw figures as JSON in var/bench/. Never part of `make test`."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(),
            "memory_gb": round(mem_kb / 1024 / 1024, 1), "python": platform.python_version(),
            "commit": commit}


def timed(name: str, fn: Any) -> Any:
    started = time.perf_counter()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    result = fn()
    print(f"bench: {name} done in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    return result


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    from bench import memory
    from bench.isolation import isolated

    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine()}
    results["classification"] = timed("classification",
                                      lambda: isolated("bench.classification.run", 5.0))
    results["languages"] = timed("languages", lambda: isolated("bench.languages.run", 8.0))
    results["grouping"] = timed("grouping", lambda: isolated("bench.grouping.run"))
    results["feeds"] = timed("feed polling", lambda: isolated("bench.feeds.run", 2000))
    results["latency"] = timed("end-to-end latency", lambda: isolated("bench.latency.run", 500))
    results["throughput"] = timed("rules throughput",
                                  lambda: isolated("bench.throughput.compare", 10_000))
    results["burst"] = timed("burst", lambda: isolated("bench.throughput.burst", 20_000))
    from bench import engines  # latency and the burst on Tansu and on Apache Kafka, side by side

    results["engines"] = timed("both engines", lambda: engines.run(500, 20_000))
    results["memory"] = timed("memory", lambda: memory.run(20_000))  # measures `prevent up` processes
    from prevent.classification.semantic import DEFAULT_MODEL, model_available

    if model_available(DEFAULT_MODEL):  # the semantic layer's model-on figures (issue 21)
        results["semantic_stage"] = timed("rules stage, model on",
                                          lambda: isolated("bench.semantic_stage.run", 3))
        results["latency_semantic"] = timed("end-to-end latency, model on",
                                            lambda: isolated("bench.latency.run_semantic", 120))
        results["memory_semantic"] = timed("memory, model loaded",
                                           lambda: memory.run(0, semantic=True))
        results["memory_semantic_2"] = timed("memory, model loaded, two workers",
                                             lambda: memory.run(0, semantic=True, workers=2))
    else:
        results["semantic_installed"] = False
    results["duration_s"] = round(time.perf_counter() - started)
    out = REPO / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    stamp = results["machine"]["date"].replace(":", "")
    (out / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2))
    (REPO / "docs" / "PERFORMANCE.md").write_text(render(results))
    print(f"wrote docs/PERFORMANCE.md and var/bench/bench-{stamp}.json", file=sys.stderr)


def _lat(row: dict[str, Any]) -> str:
    if "p50_ms" not in row:
        return f"n={row.get('n', 0)}"
    return (f"{row['p50_ms']:.0f} / {row['p95_ms']:.0f} / {row['p99_ms']:.0f} / "
            f"{row['max_ms']:.0f} (n={row['n']})")


def _phases(t: dict[str, Any]) -> list[str]:
    ph = t["stage_phases"]
    passthrough = t["pairs"][-1]["pass_through"]["per_second"]
    lines = ["", "## Where the rules stage's time goes",
             "",
             f"A second run of the stage alone ({ph['incidents']:,} incidents, batches of "
             f"{t['stage']['batch']:,}) with each step timed where the stage calls it, in microseconds "
             f"per incident: {ph['total_us']:.0f} µs in all, one process. In the consumer the "
             "preparation step runs in its worker process, on the other core, while the consumer "
             "writes the previous batch. Half the last pair's "
             f"pass-through rate ({passthrough:,.0f}/s) leaves {2e6 / passthrough:.0f} µs per incident "
             "for everything the consumer's own process does, Kafka included.",
             "", "| step | µs per incident |", "|---|---|"]
    lines += [f"| {label} | {us:.1f} |" for label, us in ph["phases_us"].items()]
    lines.append(f"| other (the batch's reads, write lock, commit) | {ph['other_us']:.1f} |")
    return lines


LEXICON_BAR = 10_000  # issue 21: items/s per core, the lexicon path
SEMANTIC_BAR = 50  # items/s, the rules stage's classification + refine with the layer on
P99_BAR_MS = 2_000  # item -> proposed alert, model on
RSS_BAR_MB = 400  # `prevent up` idle, all its processes


def _semantic_installed(r: dict[str, Any]) -> bool:
    return bool((r.get("languages") or {}).get("semantic", {}).get("installed")
                or r.get("latency_semantic") or r.get("memory_semantic"))


def _semantic_absent(r: dict[str, Any]) -> str:
    """Why a model-on figure is missing: the layer is not installed, or this run did not
    measure it."""
    sem = (r.get("languages") or {}).get("semantic") or {}
    if r.get("semantic_installed") is False or (sem and not sem.get("installed") and not sem.get("skipped")):
        return "semantic layer not installed (`pip install 'prevent[semantic]'`)"
    return "not measured in this run"


def _missing(why: str) -> str:
    return "not installed" if "not installed" in why else "not measured"


def _idle_total(mem: dict[str, Any]) -> tuple[float, str]:
    """`prevent up` idle, all its processes, with the embedded broker it starts itself (the
    bench runs that broker outside its tree and reads it apart)."""
    total, broker = mem["idle_total_rss_mb"], mem.get("broker_idle_rss_mb")
    parts = f"main {mem['idle_rss_mb']:,.0f}, its children {mem.get('children_idle_rss_mb', 0):,.0f}"
    if broker is None:
        return total, f"{parts}; the embedded broker not counted"
    return total + broker, f"{parts}, embedded broker {broker:,.0f}"


def _status(value: float | None, bar: float, at_most: bool = False) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= bar if at_most else value >= bar) else "**not met**"


def _dense_name(lang: dict[str, Any]) -> str | None:
    name = (lang.get("throughput_corpora") or {}).get("incident_dense")
    return name.removeprefix("incident-dense: ") if name else None


def _bars(r: dict[str, Any]) -> list[str]:
    """Issue 21's performance bars, each with the figure this run measured and whether it
    is met (computed here from the figures)."""
    lang = r.get("languages") or {}
    tp = lang.get("throughput") or {}
    corpora = lang.get("throughput_corpora") or {}
    sem = lang.get("semantic") or {}
    installed = _semantic_installed(r)
    absent = _semantic_absent(r)
    rows: list[tuple[str, str, str]] = []

    for key, label in (("real_load", "lexicon path, real load"),
                       ("incident_dense", "lexicon path, incident-dense")):
        row = tp.get(corpora.get(key) or "")
        if row:
            figure = (f"median {row['median']:,} items/s per core (min {row['min']:,}, max {row['max']:,}; "
                      f"{row['rounds']} alternating rounds of {row['seconds_per_round']:g} s; "
                      f"{corpora[key]}, {row['items']} items, {row['languages']} languages)")
            if key == "real_load":
                rows.append((f"{label} ≥ {LEXICON_BAR:,} items/s per core", figure,
                             _status(row["median"], LEXICON_BAR)))
            else:  # the worst case, shown beside the bar: performance bars are about real load
                rows.append((f"{label}: the worst case, every item an incident", figure,
                             "shown, not a bar"))
        else:
            rows.append((f"{label} ≥ {LEXICON_BAR:,} items/s per core", "not measured in this run",
                         "not measured"))

    bar = f"semantic layer on: classification + `refine` ≥ {SEMANTIC_BAR} items/s"
    if sem.get("installed"):
        real = sem.get("real_load")
        if real:
            rows.append((f"{bar} (real load)",
                         f"{real['items_per_s']:,} items/s on one core ({real['name']}; "
                         f"the model read {real['model_read']} of {real['items']})",
                         _status(real["items_per_s"], SEMANTIC_BAR)))
        dense = _dense_name(lang)
        row = (sem.get("sets") or {}).get(dense or "")
        if row:
            rows.append((f"{bar} (incident-dense)", f"{row['items_per_s']:,} items/s on one core ({dense}; "
                         f"the model read {row['model_read']} of {row['items']})",
                         _status(row["items_per_s"], SEMANTIC_BAR)))
        if not real and not row:
            rows.append((bar, "not measured in this run", "not measured"))
    else:
        rows.append((bar, absent, _missing(absent)))
    rows += _stage_bars(r, absent)

    bar = f"item → proposed alert p99 ≤ {P99_BAR_MS / 1000:g} s, model on"
    lat = r.get("latency_semantic") or {}
    for row in lat.values():
        p99 = row["poll_to_smtp"].get("p99_ms")
        figure = (f"p99 {p99:,.0f} ms ({row['path']}, consumer fetch wait {row['fetch_max_wait_ms']} ms, "
                  f"{row['items_per_s']:g} items/s, n={row['poll_to_smtp'].get('n', 0)})"
                  if p99 is not None else f"n={row['poll_to_smtp'].get('n', 0)}: too few delivered")
        rows.append((bar, figure, _status(p99, P99_BAR_MS, at_most=True)))
    if not lat:
        rows.append((bar, absent, _missing(absent)))

    for key, label in (("memory", "without the model"), ("memory_semantic", "model loaded"),
                       ("memory_semantic_2", "model loaded, PREVENT_RULES_WORKERS=2")):
        bar = f"`prevent up` idle RSS ≤ {RSS_BAR_MB} MB, {label}"
        mem = r.get(key)
        if mem and "idle_total_rss_mb" in mem:
            total, parts = _idle_total(mem)
            rows.append((bar, f"{total:,.0f} MB, all its processes ({parts})",
                         _status(total, RSS_BAR_MB, at_most=True)))
        elif key != "memory_semantic_2" or not installed:
            why = absent if key.startswith("memory_semantic") else "not measured in this run"
            rows.append((bar, why, _missing(why)))

    lines = ["", "## Issue 21 bars", "",
             "Each bar with the figure this run measured; met or not is computed from the figure "
             f"(the lexicon path: the median of its rounds, on real load, as every performance bar "
             f"here is about real load; its incident-dense figure is the worst case, shown beside it). "
             f"Semantic layer: "
             f"{'installed, measured with it on' if installed else absent.removeprefix('semantic layer ')}.",
             "",
             "| bar | measured | |", "|---|---|---|"]
    lines += [f"| {b} | {fig} | {st} |" for b, fig, st in rows]
    return lines


def _setup(run: dict[str, Any]) -> str:
    return f"PREVENT_RULES_WORKERS={run['workers']}"


def _stage_bars(r: dict[str, Any], absent: str) -> list[tuple[str, str, str]]:
    """The bar as issue 21 words it: the rules stage itself (Kafka, the preparation workers,
    SQLite), wall clock, on incident-dense input, with the layer on."""
    bar = f"semantic layer on: the rules stage keeps up with ≥ {SEMANTIC_BAR} items/s"
    stage = r.get("semantic_stage") or {}
    if not stage.get("runs"):
        why = absent if not stage or not stage.get("installed", True) else "no incident-dense set"
        return [(bar, why, _missing(why))]
    return [(f"{bar} ({_setup(run)})",
             f"{run['items_per_s']:,} items/s wall clock ({run['incidents']} incidents, {stage['corpus']} "
             f"{stage['passes']} times over; the model read {stage['model_read']} of {stage['items']}; "
             f"load average {run['loadavg_1min_before']:g} before)",
             _status(run["items_per_s"], SEMANTIC_BAR))
            for run in stage["runs"].values()]


def _languages(lang: dict[str, Any] | None) -> list[str]:
    if not lang:
        return []
    lines = ["", "## Detection in every language", "",
             "Alarm recall per language (a real incident alarms for a labelled community at severity "
             "2 or more; disasters: type natural_disaster at 2 or more), community precision "
             "(communities named rightly of all named on those incidents), scored as "
             "`shared/tools/score_alarms.py` scores them, and the lexicon path's throughput on one core "
             "(`time.process_time`, language identification, matching, casualties, places; every "
             "language's automaton compiled first). The held-out sets were written by someone who had "
             "not seen the lexicons (docs/CLASSIFICATION.md, Evaluation). How the matcher keeps Arabic "
             "and Hebrew clitic prefixes out of its automata, and what that saves: docs/CLASSIFICATION.md, "
             "Matching.", "",
             "| set | alarm recall | per language | community precision | negatives alarmed | "
             "items/s per core |",
             "|---|---|---|---|---|---|"]
    for name, row in lang["sets"].items():
        per = ", ".join(f"{k} {v['alarmed']}/{v['incidents']}" for k, v in row["per_language"].items())
        cp = row.get("community_precision")
        prec = f"{cp} ({row['communities_right']}/{row['communities_named']})" if cp is not None else "–"
        lines.append(f"| {name} | {row['recall']} | {per} | {prec} | "
                     f"{row['negatives_alarmed']}/{row['negatives']} | {row['items_per_s']:,} |")
    tp = lang.get("throughput") or {}
    if tp:
        first = next(iter(tp.values()))
        lines += ["", "### Lexicon path under load",
                  "", f"Items per second per core (`time.process_time`, pinned to one core, no declared "
                  f"language) in {first['rounds']} rounds of about {first['seconds_per_round']:g} s each, "
                  "the corpora alternating, after one warm-up pass. Real load: "
                  "`bench/data/news-stream.jsonl`, ordinary news of a day (politics, sport, weather, "
                  "courts; unlabelled, used only for speed: bench/data/news-stream.md). Incident-dense: "
                  "a labelled multilingual set, nearly every item an incident.", "",
                  "| corpus | items | languages | min | median | max | every round |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in tp.items():
            rounds = ", ".join(f"{x:,}" for x in row["per_round"])
            lines.append(f"| {name} | {row['items']} | {row['languages']} | {row['min']:,} | "
                         f"{row['median']:,} | {row['max']:,} | {rounds} |")
    sem = lang.get("semantic") or {}
    if sem.get("installed"):
        lines += ["", "### With the semantic layer on", "",
                  f"{sem['model']}, {sem['exemplars']} exemplars; off by default "
                  "(docs/CLASSIFICATION.md, \"Meaning beyond words\"): classification and `refine` "
                  f"on one core, the model on one thread; {sem['embed_ms_per_item']} ms of CPU to embed one "
                  f"item; {sem['load_and_embed_bank_s']} s to load the model and embed the exemplars. "
                  "The model reads only the items where it can change a decision (an alarm, or a language "
                  "without a lexicon).", "",
                  "| set | alarm recall | community precision | negatives alarmed | items the model read | "
                  "items/s per core |",
                  "|---|---|---|---|---|---|"]
        real = sem.get("real_load")
        if real:
            lines.append(f"| {real['name']} | – | – | – | {real['model_read']}/{real['items']} | "
                         f"{real['items_per_s']:,} |")
        for name, row in sem["sets"].items():
            cp = row.get("community_precision")
            lines.append(f"| {name} | {row['recall']} | {cp if cp is not None else '–'} | "
                         f"{row['negatives_alarmed']}/{row['negatives']} | "
                         f"{row['model_read']}/{row['items']} | {row['items_per_s']:,} |")
    elif sem.get("skipped"):
        lines += ["", "Semantic layer: not measured in this run; off by default (docs/CLASSIFICATION.md)."]
    else:
        lines += ["", "Semantic layer: not installed in this run (`pip install 'prevent[semantic]'` to "
                  "measure it); off by default (docs/CLASSIFICATION.md)."]
    return lines


def _grouping(g: dict[str, Any] | None) -> list[str]:
    """Same-event pairs grouping joins on the labelled multilingual sets, and what the
    semantic layer's model would cost to join the rest (``bench/grouping.py``)."""
    if not g or not g.get("sets"):
        return []
    lines = ["", "## One event across languages: grouping", "",
             "Each labelled multilingual set replayed as `prevent classify --group` replays it (lexicon "
             "path, semantic layer off); every pair of items counted: same-event pairs (an `event` key "
             "shared, one event reported in several languages) joined in one cluster or missed, and "
             "pairs of different events joined. Only a missed pair with a community on both items can be "
             "joined: grouping needs a shared community.", "",
             "| set | same-event pairs joined | missed (with a community on both) | false joins |",
             "|---|---|---|---|"]
    for name, row in g["sets"].items():
        named = ", ".join("/".join(p) for p in row.get("missed_pairs_with_community") or ())
        lines.append(f"| {name} | {row['joined']}/{row['same_event_pairs']} | {row['missed']} "
                     f"({row['missed_with_community']}{': ' + named if named else ''}) | "
                     f"{row['false_joins']} |")
    if g.get("absent"):
        lines += ["", f"Not present on this machine: {', '.join(g['absent'])}."]
    m = g.get("model") or {}
    if not m.get("installed"):
        why = "not measured in this run" if m.get("skipped") else "model not installed"
        lines += ["", f"Title similarity with the semantic layer's model: {why}."]
    elif m.get("rescuable"):
        pairs = ", ".join(f"{'/'.join(x['pair'])} at {x['similarity']}" for x in m["rescuable"])
        top = m.get("highest_different") or {}
        lines += ["", f"With the model ({m['name']}, cosine similarity of titles): the missed pairs "
                  f"with a community on both score {pairs}. Of the {m['different_sharing_community']:,} "
                  f"different-event pairs sharing a community, {m['at_or_above']:,} score at or above "
                  f"{m['threshold']} ({m['at_or_above_same_country']:,} in the same country; within "
                  f"{m['window_hours']:g} h of each other {m['at_or_above_within_window']}, "
                  f"{m['at_or_above_same_country_within_window']} in the same country); the highest "
                  f"different-event pair scores {top.get('similarity', '–')}. A threshold that joins "
                  "the missed pairs would join those too: the model is not used for grouping "
                  "(docs/CLASSIFICATION.md, \"One event across languages\")."]
    else:
        lines += ["", f"With the model ({m['name']}): no missed pair with a community on both, so "
                  "nothing for it to rescue."]
    return lines


def _model_on(r: dict[str, Any]) -> list[str]:
    """End-to-end latency and `prevent up` memory with the semantic layer's model loaded."""
    lines = ["", "## With the model on: latency and memory", ""]
    lat, mem = r.get("latency_semantic"), r.get("memory_semantic")
    if not _semantic_installed(r):
        return lines + [f"Semantic layer: {_semantic_absent(r)}, so no model-on latency or memory "
                        "figure."]
    stage = r.get("semantic_stage") or {}
    if stage.get("runs"):
        lines += ["The rules stage with the layer on (`bench/semantic_stage.py`): `running_system` with the "
                  "rules service, the embedded broker, SQLite, the real playbooks, lexicons and exemplars; "
                  f"{stage['corpus']} ({stage['items']} items, the model reads {stage['model_read']}) "
                  f"published {stage['passes']} times over as one burst; wall clock from the first record "
                  "published to "
                  "the last incident stored. The workers' and the consumer's CPU seconds in that window, and "
                  "the load average before it, say how much of the machine the stage had.", "",
                  "| set-up | incidents | seconds | items/s | workers' CPU s | consumer's CPU s | "
                  "load average before |",
                  "|---|---|---|---|---|---|---|"]
        for run in stage["runs"].values():
            lines.append(f"| {_setup(run)} | {run['incidents']} | {run['seconds']} | {run['items_per_s']} | "
                         f"{run['workers_cpu_s']} | {run['consumer_cpu_s']} | {run['loadavg_1min_before']} |")
        lines.append("")
    if lat:
        lines += ["Item → proposed alert (poll → SMTP accepted, auto-confirming playbook) with the "
                  "semantic layer on: every item here alarms, so the model reads each one in the "
                  "preparation worker; items arrive below the model's saturation. A first item, not "
                  "timed, waits until the worker has loaded the model and embedded the exemplars. "
                  "p50 / p95 / p99 / max in ms.", "",
                  "| path | consumer fetch wait | items/s | first item after start | poll → publish | "
                  "publish → SMTP | poll → SMTP | poll → SMTP p99 without the model |",
                  "|---|---|---|---|---|---|---|---|"]
        off = r.get("latency") or {}
        for row in lat.values():
            same = off.get(f"poll_fetch_wait_{row['fetch_max_wait_ms']}ms") or {}
            base = same.get("poll_to_smtp") or {}
            without = (f"{base['p99_ms']:,.0f} ms (at {same['items_per_s']:g} items/s)"
                       if "p99_ms" in base else "–")
            lines.append(f"| {row['path']} | {row['fetch_max_wait_ms']} ms | {row['items_per_s']:g} | "
                         f"{row.get('first_item_s', '–')} s | {_lat(row['poll_to_publish'])} | "
                         f"{_lat(row['publish_to_smtp'])} | {_lat(row['poll_to_smtp'])} | {without} |")
    else:
        lines.append("Model-on latency: not measured in this run.")
    lines.append("")
    if mem:
        total, parts = _idle_total(mem)
        per = ", ".join(f"{v:,}" for v in sorted((mem.get("idle_rss_mb_per_process") or {}).values(),
                                                 reverse=True))
        off = r.get("memory") or {}
        beside = (f"; with the layer off in this run: {_idle_total(off)[0]:,.0f} MB"
                  if "idle_total_rss_mb" in off else "")
        lines.append(f"`prevent up` idle with the model loaded (PREVENT_SEMANTIC=1, read 30 s after "
                     f"`/healthz` answers): {total:,.0f} MB, all its processes ({parts}; its tree "
                     f"process by process: {per} MB){beside}. The preparation worker's peak while it "
                     f"loads the model and embeds the exemplars: {mem.get('children_peak_rss_mb', 0):,.0f} "
                     "MB.")
    else:
        lines.append("Model-on memory: not measured in this run.")
    two = r.get("memory_semantic_2")
    if two and "idle_total_rss_mb" in two:
        total, parts = _idle_total(two)
        lines += ["", f"With two preparation workers (PREVENT_RULES_WORKERS=2), each with its own model: "
                  f"{total:,.0f} MB, all its processes ({parts})."]
    return lines


def _summary(r: dict[str, Any]) -> list[str]:
    """The first table: a row per part this run measured."""
    c, f, t, b, mem = (r.get("classification"), r.get("feeds"), r.get("throughput"), r.get("burst"),
                       r.get("memory"))
    rows: list[str] = []
    if c:
        rows.append(f"| classification + matching (one core, {c['playbooks']} playbooks, "
                    f"{c['lexicon_terms']} lexicon terms) | {c['items_per_s']:,.0f} incidents/s | "
                    "naive regex per term: "
                    f"{c['baseline_items_per_s']:,.0f}/s | {c['ratio']:.0f}× |")
    if f:
        rows.append(f"| one poll round of {f['watcher']['feeds']:,} local feeds (10% changed) | "
                    f"{f['watcher']['round_seconds']:.1f} s wall, {f['watcher']['cpu_seconds']:.1f} s CPU | "
                    "`feedparser.parse(url)` each in turn: "
                    f"{f['baseline_feedparser']['round_seconds']:.1f} s wall, "
                    f"{f['baseline_feedparser']['cpu_seconds']:.1f} s CPU | {f['speedup_wall']:.1f}× wall, "
                    f"{f['cpu_ratio']:.1f}× CPU |")
    if t:
        rows += [f"| rules consumer, burst of {p['rules']['incidents']:,} labelled incidents (50 playbooks, "
                 f"500 sites), pair {i} of {len(t['pairs'])} | {p['rules']['per_second']:,.0f} incidents/s | "
                 f"aiokafka pass-through just before: {p['pass_through']['per_second']:,.0f}/s | "
                 f"{p['ratio']:.1%} |" for i, p in enumerate(t["pairs"], start=1)]
        rows += [
            f"| rules consumer against the pass-through, the {len(t['pairs'])} pairs above | median "
            f"{t['median_ratio']:.1%} | lowest {min(p['ratio'] for p in t['pairs']):.1%}, highest "
            f"{max(p['ratio'] for p in t['pairs']):.1%} | target: at least 50% |",
            f"| the rules stage alone (`process_batch`, no Kafka, batches of {t['stage']['batch']:,}, "
            f"SQLite, one process: no worker) | {t['stage']['per_second']:,.0f} incidents/s | "
            "the consumer (last pair): "
            f"{t['pairs'][-1]['rules']['per_second']:,.0f}/s | "
            f"{t['pairs'][-1]['rules']['per_second'] / t['stage']['per_second']:.0%} |"]
    if b:
        rows.append(f"| burst of {b['incidents']:,} incidents until every alert is stored | "
                    f"{b['seconds']:.0f} s ({b['alerts']} alerts) | | |")
    if mem:
        rows.append(f"| peak RSS of `prevent up` | idle {mem['idle_rss_mb']:.0f} MB, during a "
                    f"{mem['burst']:,} burst {mem['peak_rss_mb_during_burst']:.0f} MB | its preparation "
                    f"worker: idle {mem.get('children_idle_rss_mb', 0):.0f} MB, peak "
                    f"{mem.get('children_peak_rss_mb', 0):.0f} MB | all its processes idle: "
                    f"{mem.get('idle_total_rss_mb', 0):.0f} MB without its broker (bound, with it: "
                    f"{RSS_BAR_MB} MB) |")
    if not rows:
        return []
    return ["", "| what | figure | beside | ratio |", "|---|---|---|---|", *rows]


def _latency(latency: dict[str, Any] | None) -> list[str]:
    if not latency:
        return []
    lines = [
        "",
        "## End-to-end latency (feed item → SMTP accepted), auto-confirming playbook",
        "",
        "p50 / p95 / p99 / max in ms. The poll interval is excluded: each poll is triggered as soon "
        "as the item appears; on the push path the item is POSTed, signed, to the console's WebSub "
        "callback as a hub would deliver it. The embedded broker answers a fetch only when "
        "`fetch_max_wait_ms` expires, so the consumer setting dominates the Kafka hops.",
        "",
        "| path | consumer fetch wait | poll or push → publish | publish → SMTP | poll or push → SMTP |",
        "|---|---|---|---|---|",
    ]
    for row in latency.values():
        lines.append(f"| {row['path']} | {row['fetch_max_wait_ms']} ms | {_lat(row['poll_to_publish'])} | "
                     f"{_lat(row['publish_to_smtp'])} | {_lat(row['poll_to_smtp'])} |")
    return lines


def render(r: dict[str, Any]) -> str:
    """docs/PERFORMANCE.md from one run's results; a part missing from ``r`` (not measured,
    or the semantic layer not installed) is left out or said to be missing."""
    m = r.get("machine") or {}
    lines = [
        "# Performance",
        "",
        f"Measured by `make bench` (`python -m bench`) on {m.get('date', '?')}, commit "
        f"`{m.get('commit', '?')}`: {m.get('cores', '?')} cores, {m.get('memory_gb', '?')} GB, Python "
        f"{m.get('python', '?')}. All figures come from one run; "
        "ratios compare two things measured side by side in that run. The machine is small and "
        "shared, so absolute numbers are noisy; the ratios are the point.",
    ]
    lines += _bars(r)
    lines += _summary(r)
    lines += _latency(r.get("latency"))
    from bench import engines

    lines += engines.render(r.get("engines"))
    lines += _languages(r.get("languages"))
    lines += _grouping(r.get("grouping"))
    lines += _model_on(r)
    if r.get("throughput"):
        lines += _phases(r["throughput"])
    b = r.get("burst")
    if b and b.get("lag_curve"):
        lines += ["", "## Consumer lag during the burst (seconds since the burst, incidents not yet stored)",
                  "", "| t (s) | lag |", "|---|---|"]
        lines += [f"| {t_s} | {lag:,} |" for t_s, lag in b["lag_curve"]]
    notes = REPO / "bench" / "notes.md"  # measurements made by hand, kept with their dates
    if notes.is_file():
        lines += ["", *notes.read_text(encoding="utf-8").rstrip().splitlines()]
    took = f" (this run: {r['duration_s'] / 60:.0f} minutes)" if r.get("duration_s") else ""
    lines += ["", f"Reproduce with `make bench`{took}; the raw JSON is in `var/bench/`. Every figure "
              "here is rendered from that JSON by `bench/__main__.py`, except the one-off "
              "measurements above, which come from `bench/notes.md` with their dates.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
