"""The lexicon files: strict schemas, loading with line numbers, cross-checks.

Two YAML files in the playbooks directory hold every word the classifier knows:
``communities.yaml`` (who can be targeted, and the words that name them) and
``incident_types.yaml`` (what can happen, how bad it is). The schemas forbid
unknown keys so a typo is an error, never a silently ignored rule; errors carry
``file:line`` taken from the YAML node marks so an editor can jump to them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from prevent.platform.yamlsource import YAML_FAILURES, empty_node, yaml_failure

if TYPE_CHECKING:
    from prevent.classification.diaspora import DiasporaMap

log = logging.getLogger("prevent.classification")
# libyaml's C parser where PyYAML was built with it (about ten times faster), else Python's.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
COMMUNITIES_FILE = "communities.yaml"
INCIDENT_TYPES_FILE = "incident_types.yaml"
LEXICONS_DIR = "lexicons"  # one file per language: lexicons/fr.yaml, lexicons/ar.yaml, ...

INCIDENT_TYPES = (
    "armed_attack", "bombing", "arson", "vandalism", "hate_crime", "riot", "protest",
    "terror_threat", "threat_level_change", "natural_disaster", "none",
)

Term = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=80)]
# A term of a language lexicon: a word or phrase; a final ``*`` makes it a stem ("attentat*").
# One letter is allowed (a Hebrew or Arabic clitic prefix, a Tamil or Hindi one-letter word).
LangTerm = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80,
                                            pattern=r"^[^*]+\*?$")]
LangCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
CommunityId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Severity = Annotated[int, Field(ge=0, le=4)]
M = TypeVar("M", bound=BaseModel)


class LexiconError(Exception):
    """An invalid lexicon file; the message is ``file:line: message`` (one per line)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- communities


class Community(_Strict):
    id: CommunityId
    name: str
    kind: Literal["faith", "denomination", "diversity", "diaspora"]
    parent: CommunityId | None = None
    # Faiths a diaspora usually belongs to, emitted with it (e.g. somali -> muslim).
    implies: tuple[CommunityId, ...] = ()
    # Countries whose events concern this community's diaspora (disasters), and where
    # a national name is not a minority marker (so parents are not emitted there).
    home_countries: tuple[CountryCode, ...] = ()
    people: tuple[Term, ...] = ()
    places: tuple[Term, ...] = ()
    clergy: tuple[Term, ...] = ()
    observances: tuple[Term, ...] = ()
    negative: tuple[Term, ...] = ()
    # Groups and forces that act, or claim to act, in this community's name: an attack by
    # them puts this community here at risk of backlash ("Islamist", "Israeli forces").
    perpetrators: tuple[Term, ...] = ()

    def terms(self) -> Iterable[tuple[str, str]]:
        """(group, term) for every positive term."""
        for group in ("people", "places", "clergy", "observances"):
            for term in getattr(self, group):
                yield group, term


class CommunitiesFile(_Strict):
    version: Literal[1]
    # A community word followed directly by one of these names the perpetrator
    # ("Buddhist mobs", "Israeli forces"), not the target.
    non_target_heads: tuple[Term, ...] = ()
    # Of those heads, the ones that name perpetrators (not speakers): "Hindu mob" puts
    # Hindus here at risk of backlash; "Muslim leaders said" does not.
    blame_heads: tuple[Term, ...] = ()
    # Verb forms that say the people named just before them acted: "Jewish MP attacks Labour",
    # "Rabbi slams critics" (one word between at most for people; none for clergy).
    acting_verbs: tuple[Term, ...] = ()
    countries: dict[CountryCode, tuple[Term, ...]] = {}
    # Countries where one faith is the religion of nine in ten people or more: an attack on
    # a religious gathering there that names no faith is taken to target that faith.
    majority_faith: dict[CommunityId, tuple[CountryCode, ...]] = {}
    # Words for a religious gathering or its place, used with majority_faith.
    religious_gatherings: tuple[Term, ...] = ()
    # Words for people from elsewhere (tourists, workers from other states), used with a
    # diaspora-map region's ``outsider_faith``.
    outsiders: tuple[Term, ...] = ()
    communities: tuple[Community, ...] = Field(min_length=1)


# --------------------------------------------------------------------------- incident types


class TermRule(_Strict):
    terms: tuple[Term, ...] = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0, le=10)
    severity: Severity = 1
    # Words that report an incident only where the item also has a hate_context word
    # ("found dead" is a hate crime in "LGBTQ activist found dead ... homophobic violence").
    needs_context: bool = False


class IncidentType(_Strict):
    id: Literal[INCIDENT_TYPES]  # type: ignore[valid-type]
    description: str
    rules: tuple[TermRule, ...] = ()
    negative: tuple[Term, ...] = ()


class HarmRule(_Strict):
    terms: tuple[Term, ...] = Field(min_length=1)
    severity: Severity


class CasualtyRule(_Strict):
    killed: int | None = Field(default=None, ge=1)
    injured: int | None = Field(default=None, ge=1)
    severity: Severity


class IncidentTypesFile(_Strict):
    version: Literal[1]
    severity_scale: dict[Severity, str]
    precedence: tuple[str, ...]
    cap_severity: dict[str, Severity]
    casualty_severity: tuple[CasualtyRule, ...]
    # Victim words: link a community to an incident in the same sentence; never choose the type.
    harm: tuple[HarmRule, ...] = ()
    # Words that raise severity wherever they appear in an incident ("devastating").
    escalation: tuple[HarmRule, ...] = ()
    # Title words of items that look back on an event (anniversary, trial): severity <= 1.
    aftermath: tuple[Term, ...] = ()
    aftermath_max_severity: Severity = 1
    # Words after which a type word names the cause, not the incident ("riot after stabbing").
    cause_markers: tuple[Term, ...] = ()
    cause_weight: float = Field(default=0.5, ge=0, le=1)
    # Words that show hate motivation; they enable rules marked needs_context.
    hate_context: tuple[Term, ...] = ()
    # Phrases that report nobody hurt ("no one was injured"): harm words inside them do not count.
    no_harm: tuple[Term, ...] = ()
    # How far (characters, same sentence) a type or harm word may be from a community word.
    link_window: int = Field(default=120, ge=10)
    types: tuple[IncidentType, ...]


# --------------------------------------------------------------------------- languages


class CommunityWords(_Strict):
    """The words of one language that name one community (defined in communities.yaml)."""

    people: tuple[LangTerm, ...] = ()
    places: tuple[LangTerm, ...] = ()
    clergy: tuple[LangTerm, ...] = ()
    observances: tuple[LangTerm, ...] = ()
    negative: tuple[LangTerm, ...] = ()
    perpetrators: tuple[LangTerm, ...] = ()  # groups acting in the community's name (backlash)

    def terms(self) -> Iterable[tuple[str, str]]:
        for group in ("people", "places", "clergy", "observances"):
            for term in getattr(self, group):
                yield group, term


class LangTermRule(_Strict):
    terms: tuple[LangTerm, ...] = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0, le=10)
    severity: Severity = 1
    needs_context: bool = False


class LangType(_Strict):
    rules: tuple[LangTermRule, ...] = ()
    negative: tuple[LangTerm, ...] = ()


class LangHarmRule(_Strict):
    terms: tuple[LangTerm, ...] = Field(min_length=1)
    severity: Severity


class LanguageLexicon(_Strict):
    """``lexicons/<lang>.yaml``: every word of one language the classifier knows. The
    communities and incident types themselves are defined once, in the two base files;
    a language file only gives their words."""

    version: Literal[1]
    lang: LangCode
    name: str
    # Clitics written joined to the next word, tried before every term (Arabic و ب ل ال).
    prefixes: tuple[LangTerm, ...] = ()
    # Terms a native speaker should review: free text, kept with the file.
    review: tuple[str, ...] = ()
    communities: dict[CommunityId, CommunityWords] = {}
    types: dict[str, LangType] = {}
    harm: tuple[LangHarmRule, ...] = ()
    escalation: tuple[LangHarmRule, ...] = ()
    aftermath: tuple[LangTerm, ...] = ()
    cause_markers: tuple[LangTerm, ...] = ()
    hate_context: tuple[LangTerm, ...] = ()
    no_harm: tuple[LangTerm, ...] = ()  # "aucun blessé": the harm words inside do not count
    # A community word directly followed (non_target_heads) or preceded (non_target_before)
    # by one of these names who acted, not who was hit: "Hindu mobs", "extrémistes hindous".
    non_target_heads: tuple[LangTerm, ...] = ()
    non_target_before: tuple[LangTerm, ...] = ()
    # Of those, the heads that name perpetrators rather than speakers (backlash evidence).
    blame_heads: tuple[LangTerm, ...] = ()
    blame_before: tuple[LangTerm, ...] = ()
    # Verb forms that say the people named just before them acted ("attacca il governo").
    acting_verbs: tuple[LangTerm, ...] = ()
    religious_gatherings: tuple[LangTerm, ...] = ()
    outsiders: tuple[LangTerm, ...] = ()
    # Number words for casualty figures ("trois": 3, "dozens"-like words at a cautious value).
    numbers: dict[str, int] = {}
    # Where a casualty figure usually stands: before the harm word ("15 morts", default),
    # after it ("مقتل 15"), or whichever is nearer.
    figures: Literal["before", "after", "nearest"] = "before"
    # Place names this language writes differently from every gazetteer (rare).
    countries: dict[CountryCode, tuple[LangTerm, ...]] = {}


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Lexicon:
    communities: CommunitiesFile
    incident_types: IncidentTypesFile
    # Language lexicons by language code; English is the two base files.
    languages: dict[str, LanguageLexicon] = field(default_factory=dict)
    # ``file:line`` errors of language files left out (the other languages still load).
    skipped: tuple[str, ...] = ()
    # The diaspora map (playbooks/diaspora.yaml), set by ``Classifier.from_dir``.
    diaspora: DiasporaMap | None = None


def _node_line(node: yaml.Node, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the deepest YAML node along a pydantic error location."""
    if empty_node(node):  # a document of nothing but "---"
        return 1
    for key in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(k.value) == str(key):
                    child = k if empty_node(v) else v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
        if child is None:
            break
        node = child
    return node.start_mark.line + 1


def _duplicate_keys(node: yaml.Node, path: str | Path) -> list[str]:
    """YAML silently keeps the last of two equal keys; a lexicon treats that as a mistake.
    Each node is looked at once, without recursion: an alias is the node it names, so nested
    aliases (a "billion laughs" file) or an alias of its own parent cost no more than the text."""
    found: list[tuple[int, str]] = []
    stack, visited = [node], set()
    while stack:
        current = stack.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        if isinstance(current, yaml.MappingNode):
            seen: set[object] = set()
            for k, v in current.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else id(k)
                if key in seen:
                    found.append((k.start_mark.line, f"{path}:{k.start_mark.line + 1}: "
                                                     f"duplicate key {k.value!r}"))
                seen.add(key)
                stack.append(v)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return [error for _, error in sorted(found, key=lambda f: f[0])]


def _parse(path: Path, model: type[M]) -> tuple[M | None, yaml.Node | None, list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, None, [f"{path}:0: cannot read: {exc.strerror or exc}"]
    return parse_text(text, path, model)


def parse_text(text: str, source: str | Path, model: type[M]
               ) -> tuple[M | None, yaml.Node | None, list[str]]:
    """``text`` (from ``source``, named in every message) validated as ``model``: the data,
    its YAML node tree (for line numbers) and the problems as ``source:line: ...``."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except YAML_FAILURES as exc:
        line, reason = yaml_failure(exc, text)
        return None, None, [f"{source}:{line}: invalid YAML: {reason}"]
    if node is None:
        return None, None, [f"{source}:1: empty file"]
    errors = _duplicate_keys(node, source)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            errors.append(f"{source}:{_node_line(node, err['loc'])}: {field}: {err['msg']}")
        return None, node, errors
    return (parsed if not errors else None), node, errors


def _check_communities(cf: CommunitiesFile, node: yaml.Node, path: Path) -> list[str]:
    errors: list[str] = []
    ids = [c.id for c in cf.communities]
    known = set(ids)
    for i, c in enumerate(cf.communities):
        def err(field: str, msg: str, i: int = i) -> None:
            errors.append(f"{path}:{_node_line(node, ('communities', i, field))}: "
                          f"communities.{i}.{field}: {msg}")
        if ids.count(c.id) > 1:
            err("id", f"duplicate community id {c.id!r}")
        if c.parent is not None and c.parent not in known:
            err("parent", f"unknown parent {c.parent!r}")
        for imp in c.implies:
            if imp not in known:
                err("implies", f"unknown community {imp!r}")
        if not any(True for _ in c.terms()):
            err("id", f"community {c.id!r} has no terms")
    errors.extend(f"{path}:{_node_line(node, ('majority_faith', faith))}: "
                  f"majority_faith.{faith}: unknown community {faith!r}"
                  for faith in cf.majority_faith if faith not in known)
    by_id = {c.id: c for c in cf.communities}
    for i, c in enumerate(cf.communities):
        seen, cur = {c.id}, c
        while cur.parent and cur.parent in by_id:
            if cur.parent in seen:
                errors.append(f"{path}:{_node_line(node, ('communities', i, 'parent'))}: "
                              f"communities.{i}.parent: parent cycle through {c.id!r}")
                break
            seen.add(cur.parent)
            cur = by_id[cur.parent]
    return errors


def _check_types(tf: IncidentTypesFile, node: yaml.Node, path: Path) -> list[str]:
    errors: list[str] = []
    ids = [t.id for t in tf.types]
    for i, t in enumerate(tf.types):
        if ids.count(t.id) > 1:
            errors.append(f"{path}:{_node_line(node, ('types', i, 'id'))}: "
                          f"types.{i}.id: duplicate type {t.id!r}")
    for i, p in enumerate(tf.precedence):
        if p not in INCIDENT_TYPES:
            errors.append(f"{path}:{_node_line(node, ('precedence', i))}: "
                          f"precedence.{i}: unknown incident type {p!r}")
    missing = set(ids) - set(tf.precedence) - {"none"}
    if missing:
        errors.append(f"{path}:{_node_line(node, ('precedence',))}: precedence: "
                      f"missing {', '.join(sorted(missing))}")
    return errors


def _check_language(lf: LanguageLexicon, node: yaml.Node, path: Path,
                    cf: CommunitiesFile | None) -> list[str]:
    errors: list[str] = []

    def err(loc: tuple[int | str, ...], msg: str) -> None:
        errors.append(f"{path}:{_node_line(node, loc)}: {'.'.join(str(p) for p in loc)}: {msg}")

    if path.stem != lf.lang:
        err(("lang",), f"file {path.name} holds lang {lf.lang!r}: name it {lf.lang}.yaml")
    known = {c.id for c in cf.communities} if cf is not None else set(lf.communities)
    for cid in lf.communities:
        if cid not in known:
            err(("communities", cid), f"unknown community {cid!r} (define it in {COMMUNITIES_FILE})")
    for tid in lf.types:
        # "none" holds words that say nothing was done to anyone (accidents, suicides): they
        # outvote weak incident words ("killed in a road accident").
        if tid not in INCIDENT_TYPES:
            err(("types", tid), f"unknown incident type {tid!r}")
    for word, value in lf.numbers.items():
        if value < 0:
            err(("numbers", word), "a number word must be 0 or more")
    return errors


def _load(directory: Path) -> tuple[Lexicon | None, list[str]]:
    cpath, tpath = directory / COMMUNITIES_FILE, directory / INCIDENT_TYPES_FILE
    cf, cnode, errors = _parse(cpath, CommunitiesFile)
    tf, tnode, terrors = _parse(tpath, IncidentTypesFile)
    errors += terrors
    if cf is not None and cnode is not None:
        errors += _check_communities(cf, cnode, cpath)
    if tf is not None and tnode is not None:
        errors += _check_types(tf, tnode, tpath)
    languages: dict[str, LanguageLexicon] = {}
    lang_errors: list[str] = []
    lang_dir = directory / LEXICONS_DIR
    for lpath in sorted(lang_dir.glob("*.yaml")) if lang_dir.is_dir() else ():
        lf, lnode, lerrors = _parse(lpath, LanguageLexicon)
        if lf is not None and lnode is not None:
            lerrors += _check_language(lf, lnode, lpath, cf)
        if lerrors or lf is None:
            lang_errors += lerrors
        else:
            languages[lf.lang] = lf
    if errors or cf is None or tf is None:
        return None, errors + lang_errors
    return Lexicon(cf, tf, languages, tuple(lang_errors)), lang_errors


def load_lexicon_errors(directory: Path) -> list[str]:
    """Every problem in the lexicon files as ``file:line: message``; empty when valid."""
    return _load(Path(directory))[1]


def load_lexicon(directory: Path, *, strict: bool = False) -> Lexicon:
    """The validated lexicon, or ``LexiconError`` listing every problem of the base files.
    A language file with errors is left out (its errors in ``Lexicon.skipped``, and logged)
    so one bad file never stops the other languages; ``strict`` raises for it too."""
    lexicon, errors = _load(Path(directory))
    if lexicon is None or (strict and errors):
        raise LexiconError("\n".join(errors))
    for error in lexicon.skipped:
        log.error("language lexicon left out: %s", error)
    return lexicon
