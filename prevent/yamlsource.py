"""YAML with line numbers: load a document and map a validation error's path to ``file:line``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

# libyaml's C parser where PyYAML was built with it (about ten times faster), else Python's.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

M = TypeVar("M", bound=pydantic.BaseModel)


class SourceError(ValueError):
    """One or more problems in a data file, each as ``file:line: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def load_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse once for data and once for positions; a syntax error names its line."""
    try:
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else 0
        raise SourceError([f"{source}:{line}: YAML syntax error: {exc.problem}"]) from exc
    except yaml.YAMLError as exc:  # e.g. a NUL or another control character (ReaderError)
        line = text.count("\n", 0, getattr(exc, "position", 0) or 0) + 1
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        raise SourceError([f"{source}:{line}: not YAML text: {reason}"]) from exc
    except RecursionError as exc:
        raise SourceError([f"{source}:1: YAML nested too deeply"]) from exc
    return data, node


def line_of(node: yaml.Node | None, loc: Sequence[str | int]) -> int:
    """The line of the deepest node on ``loc`` that exists (1-based; 1 when unknown)."""
    best = node
    current = node
    for part in loc:
        if isinstance(current, yaml.MappingNode):
            current = next((v for k, v in current.value if k.value == part), None)
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            current = current.value[part] if part < len(current.value) else None
        else:
            current = None
        if current is None:
            break
        best = current
    return best.start_mark.line + 1 if best is not None else 1


def validation_problems(exc: pydantic.ValidationError, node: yaml.Node | None,
                        source: str) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = ".".join(str(p) for p in loc) or "<document>"
        problems.append(f"{source}:{line_of(node, loc)}: {path}: {err['msg']}")
    return problems


def read_model(model: type[M], path: Path) -> M:
    return parse_model(model, path.read_text(encoding="utf-8"), str(path))


def parse_model(model: type[M], text: str, source: str) -> M:
    data, node = load_yaml(text, source)
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise SourceError(validation_problems(exc, node, source)) from exc
