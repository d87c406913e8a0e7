"""Loading playbooks from YAML: all files validate, or the previous set stays in force."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prevent.platform.yamlsource import SourceError, parse_model
from prevent.rules.playbooks.schema import Playbook

PLAYBOOK_GLOB = "*.yaml"
# Data files beside the playbooks: the lexicon, the feed registry, the gazetteer and the diaspora map.
NOT_PLAYBOOKS = {"communities.yaml", "incident_types.yaml", "feeds.yaml", "places.yaml", "diaspora.yaml"}


@dataclass(frozen=True)
class PlaybookSet:
    """An immutable set of playbooks, each with the stored version it came from."""

    playbooks: tuple[Playbook, ...]
    versions: Mapping[str, int] = field(default_factory=dict)

    def get(self, playbook_id: str) -> Playbook | None:
        return next((p for p in self.playbooks if p.id == playbook_id), None)

    def version_of(self, playbook_id: str) -> int:
        return self.versions.get(playbook_id, 0)


def playbook_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob(PLAYBOOK_GLOB) if p.name not in NOT_PLAYBOOKS)


def parse_sources(sources: Iterable[tuple[str, str]]) -> list[Playbook]:
    """Validate every (source name, text); raise one SourceError listing every problem."""
    problems: list[str] = []
    playbooks: list[Playbook] = []
    seen: dict[str, str] = {}
    for source, text in sources:
        try:
            playbook = parse_model(Playbook, text, source)
        except SourceError as exc:
            problems.extend(exc.problems)
            continue
        if playbook.id in seen:
            problems.append(f"{source}:1: id: '{playbook.id}' is also defined in {seen[playbook.id]}")
            continue
        seen[playbook.id] = source
        playbooks.append(playbook)
    if problems:
        raise SourceError(problems)
    return playbooks


def load_directory(directory: Path) -> PlaybookSet:
    files = playbook_files(directory)
    playbooks = parse_sources((str(p), p.read_text(encoding="utf-8")) for p in files)
    return PlaybookSet(tuple(playbooks), {p.id: 0 for p in playbooks})
