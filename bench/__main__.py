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

    results: dict[str, Any] = {"machine": machine()}
    results["classification"] = timed("classification",
                                      lambda: isolated("bench.classification.run", 5.0))
    results["languages"] = timed("languages", lambda: isolated("bench.languages.run", 8.0))
    results["feeds"] = timed("feed polling", lambda: isolated("bench.feeds.run", 2000))
    results["latency"] = timed("end-to-end latency", lambda: isolated("bench.latency.run", 500))
    results["throughput"] = timed("rules throughput",
                                  lambda: isolated("bench.throughput.compare", 10_000))
    results["burst"] = timed("burst", lambda: isolated("bench.throughput.burst", 20_000))
    from bench import engines  # latency and the burst on Tansu and on Apache Kafka, side by side

    results["engines"] = timed("both engines", lambda: engines.run(500, 20_000))
    results["memory"] = timed("memory", lambda: memory.run(20_000))  # measures `prevent up` processes
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


def _languages(lang: dict[str, Any] | None) -> list[str]:
    if not lang:
        return []
    lines = ["", "## Detection in every language", "",
             "Alarm recall per language (a real incident alarms for a labelled community at severity "
             "2 or more; disasters: type natural_disaster at 2 or more), scored as "
             "`shared/tools/score_alarms.py` scores it, and the lexicon path's throughput on one core "
             "(`time.process_time`, language identification, matching, casualties, places; every "
             "language's automaton compiled first). The held-out sets were written by someone who had "
             "not seen the lexicons (docs/CLASSIFICATION.md, Evaluation). How the matcher keeps Arabic "
             "and Hebrew clitic prefixes out of its automata, and what that saves: docs/CLASSIFICATION.md, "
             "Matching.", "",
             "| set | alarm recall | per language | negatives alarmed | items/s per core |",
             "|---|---|---|---|---|"]
    for name, row in lang["sets"].items():
        per = ", ".join(f"{k} {v['alarmed']}/{v['incidents']}" for k, v in row["per_language"].items())
        lines.append(f"| {name} | {row['recall']} | {per} | {row['negatives_alarmed']}/{row['negatives']} | "
                     f"{row['items_per_s']:,} |")
    sem = lang.get("semantic") or {}
    if sem.get("installed"):
        lines += ["", f"With the semantic layer on ({sem['model']}, {sem['exemplars']} exemplars; off by "
                  "default, docs/CLASSIFICATION.md \"Meaning beyond words\"): classification and `refine` "
                  f"on one core, the model on one thread; {sem['embed_ms_per_item']} ms of CPU to embed one "
                  f"item; {sem['load_and_embed_bank_s']} s to load the model and embed the exemplars.", "",
                  "| set | alarm recall | negatives alarmed | items the model read | items/s per core |",
                  "|---|---|---|---|---|"]
        for name, row in sem["sets"].items():
            lines.append(f"| {name} | {row['recall']} | {row['negatives_alarmed']}/{row['negatives']} | "
                         f"{row['model_read']}/{row['items']} | {row['items_per_s']:,} |")
    else:
        lines += ["", "Semantic layer: not installed in this run (`pip install 'prevent[semantic]'` to "
                  "measure it); off by default (docs/CLASSIFICATION.md)."]
    return lines


def render(r: dict[str, Any]) -> str:
    m, c, f, t, b, mem = (r["machine"], r["classification"], r["feeds"], r["throughput"], r["burst"],
                          r["memory"])
    lines = [
        "# Performance",
        "",
        f"Measured by `make bench` (`python -m bench`) on {m['date']}, commit `{m['commit']}`: "
        f"{m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}. All figures come from one run; "
        "ratios compare two things measured side by side in that run. The machine is small and "
        "shared, so absolute numbers are noisy; the ratios are the point.",
        "",
        "| what | figure | beside | ratio |",
        "|---|---|---|---|",
        f"| classification + matching (one core, {c['playbooks']} playbooks, {c['lexicon_terms']} "
        f"lexicon terms) | {c['items_per_s']:,.0f} incidents/s | naive regex per term: "
        f"{c['baseline_items_per_s']:,.0f}/s | {c['ratio']:.0f}× |",
        f"| one poll round of {f['watcher']['feeds']:,} local feeds (10% changed) | "
        f"{f['watcher']['round_seconds']:.1f} s wall, {f['watcher']['cpu_seconds']:.1f} s CPU | "
        f"`feedparser.parse(url)` each in turn: {f['baseline_feedparser']['round_seconds']:.1f} s wall, "
        f"{f['baseline_feedparser']['cpu_seconds']:.1f} s CPU | {f['speedup_wall']:.1f}× wall, "
        f"{f['cpu_ratio']:.1f}× CPU |",
        *(f"| rules consumer, burst of {p['rules']['incidents']:,} labelled incidents (50 playbooks, "
          f"500 sites), pair {i} of {len(t['pairs'])} | {p['rules']['per_second']:,.0f} incidents/s | "
          f"aiokafka pass-through just before: {p['pass_through']['per_second']:,.0f}/s | {p['ratio']:.1%} |"
          for i, p in enumerate(t["pairs"], start=1)),
        f"| rules consumer against the pass-through, the {len(t['pairs'])} pairs above | median "
        f"{t['median_ratio']:.1%} | lowest {min(p['ratio'] for p in t['pairs']):.1%}, highest "
        f"{max(p['ratio'] for p in t['pairs']):.1%} | target: at least 50% |",
        f"| the rules stage alone (`process_batch`, no Kafka, batches of {t['stage']['batch']:,}, "
        f"SQLite, one process: no worker) | {t['stage']['per_second']:,.0f} incidents/s | "
        "the consumer (last pair): "
        f"{t['pairs'][-1]['rules']['per_second']:,.0f}/s | "
        f"{t['pairs'][-1]['rules']['per_second'] / t['stage']['per_second']:.0%} |",
        f"| burst of {b['incidents']:,} incidents until every alert is stored | {b['seconds']:.0f} s "
        f"({b['alerts']} alerts) | | |",
        f"| peak RSS of `prevent up` | idle {mem['idle_rss_mb']:.0f} MB, during a {mem['burst']:,} burst "
        f"{mem['peak_rss_mb_during_burst']:.0f} MB | its preparation worker: idle "
        f"{mem.get('children_idle_rss_mb', 0):.0f} MB, peak {mem.get('children_peak_rss_mb', 0):.0f} MB | "
        f"all its processes idle: {mem.get('idle_total_rss_mb', 0):.0f} MB (bound: 400 MB) |",
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
    for row in r["latency"].values():
        lines.append(f"| {row['path']} | {row['fetch_max_wait_ms']} ms | {_lat(row['poll_to_publish'])} | "
                     f"{_lat(row['publish_to_smtp'])} | {_lat(row['poll_to_smtp'])} |")
    from bench import engines

    lines += engines.render(r.get("engines"))
    lines += _languages(r.get("languages"))
    lines += _phases(t)
    lines += ["", "## Consumer lag during the burst (seconds since the burst, incidents not yet stored)",
              "", "| t (s) | lag |", "|---|---|"]
    lines += [f"| {t_s} | {lag:,} |" for t_s, lag in b["lag_curve"]]
    lines += ["", "Reproduce with `make bench` (under 10 minutes on this machine); the raw JSON is in "
              "`var/bench/`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
