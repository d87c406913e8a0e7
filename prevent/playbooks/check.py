"""`prevent playbooks check`: playbooks, lexicon and templates, every problem as file:line."""

from __future__ import annotations

from pathlib import Path

from notifiers.templates import NoticeRenderer
from prevent.playbooks.loader import load_directory
from prevent.yamlsource import SourceError


def check_directory(directory: Path) -> list[str]:
    problems: list[str] = []
    try:
        playbooks = load_directory(directory)
    except SourceError as exc:
        problems.extend(exc.problems)
        playbooks = None
    try:
        from prevent.classification import Classifier

        Classifier.from_dir(directory)
    except Exception as exc:  # noqa: BLE001 - LexiconError carries file:line
        problems.append(str(exc))
    if playbooks is not None:
        renderer = NoticeRenderer(directory / "templates")
        for playbook in playbooks.playbooks:
            for audience in playbook.response.notify:
                problems.extend(f"{directory}/templates: playbook {playbook.id}: {p}"
                                for p in renderer.check(audience.template))
    return problems
