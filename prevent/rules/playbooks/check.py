"""`prevent playbooks check`: playbooks, lexicon and templates, every problem as file:line."""

from __future__ import annotations

from pathlib import Path

from prevent.classification import load_lexicon, load_lexicon_errors
from prevent.classification.diaspora import DIASPORA_FILE, load_diaspora_errors
from prevent.classification.semantic import load_exemplar_errors
from prevent.notices.templates import NoticeRenderer
from prevent.platform.yamlsource import SourceError
from prevent.rules.playbooks.loader import load_directory


def check_directory(directory: Path) -> list[str]:
    problems: list[str] = []
    try:
        playbooks = load_directory(directory)
    except SourceError as exc:
        problems.extend(exc.problems)
        playbooks = None
    # Every problem of the lexicon files (base and languages) and the diaspora map: the
    # classifier itself leaves a bad language file or map out, this check names it.
    problems.extend(load_lexicon_errors(directory))
    diaspora = directory / DIASPORA_FILE
    if not problems:
        known = {c.id for c in load_lexicon(directory).communities.communities}
        if diaspora.is_file():
            problems.extend(load_diaspora_errors(diaspora, known)[1])
        # The semantic layer's exemplars (playbooks/exemplars/<lang>.yaml), checked even when
        # the layer is off: it is data beside the lexicons.
        problems.extend(load_exemplar_errors(directory, known))
    if playbooks is not None:
        renderer = NoticeRenderer(directory / "templates")
        for playbook in playbooks.playbooks:
            for audience in playbook.response.notify:
                problems.extend(f"{directory}/templates: playbook {playbook.id}: {p}"
                                for p in renderer.check(audience.template))
    return problems
