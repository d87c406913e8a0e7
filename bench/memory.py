"""Peak RSS of `prevent up` idle and during a burst of incidents (read from /proc)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.fixtures import incidents
from bench.throughput import publish_burst
from prevent.contracts import INCIDENTS
from prevent.platform.netutil import free_port


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's high-water mark of resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    """The process's own child processes (the rules consumer's preparation worker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def tree(pid: int) -> list[int]:
    """The process and all its descendants (preparation worker, resource tracker, and the
    embedded broker when ``prevent up`` starts its own)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += children(p)
        except OSError:
            pass
    return out


def run(burst: int = 20_000, semantic: bool = False, workers: int | None = None) -> dict[str, Any]:
    """``semantic``: with the semantic layer on (PREVENT_SEMANTIC=1: the preparation worker
    loads the model and embeds the exemplars); the idle figures are then taken once the
    worker is up, and ``burst`` may be 0 (idle only: a burst with the model reads every
    alarming item). ``workers``: PREVENT_RULES_WORKERS (None: the default, one), each worker
    with its own model when the layer is on."""
    with tempfile.TemporaryDirectory() as tmp:
        kafka_port, http_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREVENT_")}
        env |= {"PREVENT_VAR_DIR": tmp, "PREVENT_HTTP_PORT": str(http_port)}
        if semantic:
            env["PREVENT_SEMANTIC"] = "1"
        if workers is not None:
            env["PREVENT_RULES_WORKERS"] = str(workers)
        # Our own broker, so the burst can be published to the running system.
        from prevent.platform.broker import EmbeddedBroker
        from prevent.platform.config import Settings
        from prevent.platform.runtime import topic_partitions

        with EmbeddedBroker(topics=topic_partitions(Settings()), port=kafka_port) as broker:
            env["PREVENT_KAFKA_BOOTSTRAP"] = broker.bootstrap
            proc = subprocess.Popen([sys.executable, "-m", "prevent", "up"], env=env, cwd=tmp,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                for _ in range(120):
                    try:
                        if httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).is_success:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.5)
                time.sleep(30 if semantic else 10)  # the worker: classifier, then the model and bank
                idle = rss_mb(proc.pid)
                idle_children = sum(rss_mb(c) for c in children(proc.pid))
                idle_total = sum(rss_mb(p) for p in tree(proc.pid))  # what the 400 MB bound is on
                per_process = {p: round(rss_mb(p)) for p in tree(proc.pid)}
                # The bench's broker runs outside `prevent up`'s tree; one `prevent up` starts
                # itself sits inside it: its RSS, to add for the bound on `prevent up` alone.
                broker_proc = getattr(broker, "_proc", None)
                broker_idle = rss_mb(broker_proc.pid) if broker_proc is not None else None
                if burst:
                    asyncio.run(publish_burst(broker.bootstrap, INCIDENTS.name,
                                              incidents(burst, tag="memory")))
                    time.sleep(30)
                # idle again after it (with the model: what its threads' buffers left behind)
                after_total = sum(rss_mb(p) for p in tree(proc.pid)) if burst else None
                peak = peak_rss_mb(proc.pid)
                peak_children = sum(peak_rss_mb(c) for c in children(proc.pid))
            finally:
                proc.terminate()
                proc.wait(30)
    return {"idle_rss_mb": idle, "idle_total_rss_mb": idle_total, "peak_rss_mb_during_burst": peak,
            "burst": burst, "semantic": semantic, "workers": workers, "idle_rss_mb_per_process": per_process,
            "children_idle_rss_mb": idle_children, "children_peak_rss_mb": peak_children,
            "broker_idle_rss_mb": broker_idle, "idle_total_rss_mb_after_burst": after_total}


if __name__ == "__main__":
    import json

    # python -m bench.memory [BURST] [--semantic] [--workers=N]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    chosen = [int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--workers=")]
    print(json.dumps(run(int(args[0]) if args else 20_000, semantic="--semantic" in sys.argv,
                         workers=chosen[0] if chosen else None), indent=2))
