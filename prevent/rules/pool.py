"""Preparation: the rules stage's work that needs no database, in worker processes.

Classifying an incident and encoding its row's JSON columns (``rules.prepare``) is about a
third of what the stage costs per incident, and depends on nothing but the incident and the
lexicon. The rules consumer hands each batch to a worker process and, while the worker
prepares it, writes the previous batch in its own process: the two overlap on two cores.

A worker receives the records' bytes as they came from Kafka (already validated by the
consumer) and sends back plain tuples, which cost far less to unpickle than models. If a
worker dies, the batch is prepared in the consumer's own process and a new pool is started
for the next one: preparation never loses or holds up a batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import TYPE_CHECKING

from prevent.classification import Classifier
from prevent.classification.classify import from_tuple
from prevent.contracts import GlobalIncident
from prevent.rules.prepare import Prepared, Sent, prepare, prepare_records, start_worker, worker_ready

if TYPE_CHECKING:
    from prevent.classification.semantic import SemanticSpec

log = logging.getLogger("prevent.rules.pool")

# Below this many incidents a batch is prepared in place: a round trip to the worker
# (about a millisecond) would cost more than it saves, and latency matters most then.
MIN_WORKER_BATCH = 64
PART = 500  # incidents per task: a worker's queue the consumer can take parts back from
# With the semantic layer on, an item the model reads costs tens of milliseconds: a batch is
# cut into about this many parts per worker, so that every worker has a share of it (a batch
# of a few hundred is one 500-item part otherwise, for one worker) and none sits idle long
# at the end of it.
SEMANTIC_PARTS_PER_WORKER = 8

# The worker's side lives in ``prevent.rules.prepare``: a spawned worker imports only that module
# and what it needs (the classifier and the contracts, about 35 MB), not this one's imports.


# A part's results are about 400 KB. Through the default 64 KiB pipe, the executor's thread
# in the consumer reads them in 64 KiB pieces, each waiting for the interpreter lock that the
# consumer's busy event loop holds (up to the 5 ms switch interval), while the worker sits
# blocked on the full pipe: measured, 20-60 ms idle between parts. With 1 MiB (Linux's
# default limit for an unprivileged process) the worker writes a part and goes straight on.
RESULT_PIPE_BYTES = 1 << 20


def _widen_result_pipe(pool: ProcessPoolExecutor) -> None:
    """Enlarge the pipe the workers' results come back through (Linux; elsewhere, or if the
    executor's internals differ, the default pipe stays: slower, nothing else changes)."""
    try:
        import fcntl

        reader = pool._result_queue._reader  # type: ignore[attr-defined]
        fcntl.fcntl(reader.fileno(), fcntl.F_SETPIPE_SZ, RESULT_PIPE_BYTES)
    except (ImportError, AttributeError, OSError) as exc:
        log.debug("preparation results come back through the default pipe: %s", exc)


class Preparer:
    """Prepares batches of incidents, in ``workers`` processes (0: in this one).

    ``semantic``: the semantic layer's spec (docs/CLASSIFICATION.md, "Meaning beyond words").
    Its model is loaded in the workers only, so with it every batch goes to a worker, however
    small (the model must never run on the consumer's event loop), and parts are not taken
    back to be prepared here; a batch is cut into small parts (``part_size``) so that every
    worker takes a share. A batch prepared here all the same (a worker died) is classified
    by the lexicon alone, logged. With no worker the layer stays off."""

    def __init__(self, classifier: Classifier, *, workers: int, semantic: SemanticSpec | None = None) -> None:
        self.classifier = classifier
        self.workers = workers
        if semantic is not None and not workers:
            log.warning("semantic layer off: it runs in a preparation worker (PREVENT_RULES_WORKERS=0)")
            semantic = None
        self.semantic = semantic
        self.min_worker_batch = 1 if semantic is not None else MIN_WORKER_BATCH
        self._pool: ProcessPoolExecutor | None = None
        if workers:
            self._start_pool()

    def _start_pool(self) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=get_context("spawn"), initializer=start_worker,
            initargs=(self.classifier.lexicon, os.getpid(), self.semantic))
        _widen_result_pipe(self._pool)
        for _ in range(self.workers):  # start them now, not with the first batch
            self._pool.submit(worker_ready)

    def start(self, values: Sequence[bytes], incidents: Sequence[GlobalIncident]) -> Preparation:
        """Begin preparing ``incidents`` (decoded from ``values``) in the workers."""
        if self._pool is None or len(incidents) < self.min_worker_batch:
            return Preparation(self, None, values, incidents, [])
        pool = self._pool
        part = self.part_size(len(values))
        try:
            futures = [pool.submit(prepare_records, list(values[i:i + part]))
                       for i in range(0, len(values), part)]
        except Exception as exc:  # noqa: BLE001 - a broken pool: prepare here, start a new one
            self.worker_failed(pool, exc)
            return Preparation(self, None, values, incidents, [])
        return Preparation(self, pool, values, incidents, futures, part)

    def part_size(self, n: int) -> int:
        """Incidents per task for a batch of ``n``: ``PART``; with the semantic layer on,
        about ``SEMANTIC_PARTS_PER_WORKER`` parts per worker (at most ``PART`` each)."""
        if self.semantic is None:
            return PART
        return max(1, min(PART, -(-n // (SEMANTIC_PARTS_PER_WORKER * max(1, self.workers)))))

    def prepare_here(self, incidents: Sequence[GlobalIncident]) -> list[Prepared]:
        if self.semantic is not None and incidents:
            log.warning("%d incidents classified without the semantic layer (no worker)", len(incidents))
        return [prepare(self.classifier, i) for i in incidents]

    def worker_failed(self, pool: ProcessPoolExecutor, exc: BaseException) -> None:
        log.warning("preparation worker failed (%s: %s); preparing here, starting a new worker",
                    type(exc).__name__, exc)
        self._restart(pool)

    def _restart(self, failed: ProcessPoolExecutor) -> None:
        if self._pool is failed:
            failed.shutdown(wait=False, cancel_futures=True)
            self._start_pool()

    def use(self, classifier: Classifier) -> None:
        """Prepare with ``classifier`` from now on (a new diaspora map): new workers start
        with its lexicon; the old ones finish the parts they were given, then stop."""
        self.classifier = classifier
        old = self._pool
        if old is not None:
            self._start_pool()
            old.shutdown(wait=False)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class Preparation:
    """One batch being prepared: ``part``-sized parts queued for the workers, in order."""

    def __init__(self, preparer: Preparer, pool: ProcessPoolExecutor | None, values: Sequence[bytes],
                 incidents: Sequence[GlobalIncident], futures: list[Future[list[Sent]]],
                 part: int = PART) -> None:
        self.preparer = preparer
        self.part = part
        self.pool = pool
        self.values = values  # the records' bytes: a payload the worker did not send back
        self.incidents = incidents
        self.futures = futures

    async def result(self) -> list[Prepared]:
        """One ``Prepared`` per incident, in order. Parts no worker has started yet when the
        consumer asks are prepared here, from the last one back, so that the consumer never
        sits waiting while a worker has a queue (and the first batch costs half the wait)."""
        if not self.futures:
            return self.preparer.prepare_here(self.incidents)
        parts: list[list[Prepared] | None] = [None] * len(self.futures)
        remaining = list(range(len(self.futures)))
        while self.preparer.semantic is None and remaining and self.futures[remaining[-1]].cancel():
            n = remaining.pop()
            parts[n] = self.preparer.prepare_here(self.incidents[n * self.part:(n + 1) * self.part])
            await asyncio.sleep(0)  # a part takes tens of ms: let the next batch be fetched
        try:
            for n in remaining:
                sent = await asyncio.wrap_future(self.futures[n])
                values = self.values[n * self.part:(n + 1) * self.part]
                parts[n] = [Prepared(from_tuple(c), cj, value.decode() if pj is None else pj)
                            for (c, cj, pj), value in zip(sent, values, strict=True)]
        except Exception as exc:  # noqa: BLE001 - a dead worker must not cost the batch
            assert self.pool is not None
            self.preparer.worker_failed(self.pool, exc)
            for n in remaining:
                if parts[n] is None:
                    parts[n] = self.preparer.prepare_here(self.incidents[n * self.part:(n + 1) * self.part])
        return [p for part in parts for p in part or ()]

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()
