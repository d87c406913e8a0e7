"""YAML with line numbers: load a document and map a validation error's path to ``file:line``."""

from __future__ import annotations

import re
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


# What PyYAML raises on text it cannot read: a syntax error (with its mark), a character YAML
# refuses (ReaderError, with a position), nesting deeper than Python's stack, and a scalar its
# constructor cannot make (ValueError, no mark: an integer of more than 4300 digits, a date
# such as 2024-13-45).
YAML_FAILURES = (yaml.YAMLError, RecursionError, ValueError)
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what YAML counts as a line break


def yaml_failure(exc: BaseException, text: str) -> tuple[int, str]:
    """The line (1-based) and the reason of one of ``YAML_FAILURES`` raised on ``text``."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        # libyaml marks the end of a text without a final line break one line past its last.
        last = len(_LINE_BREAK.findall(text)) + 1
        return (min(mark.line + 1, last) if mark else 1), str(exc.problem or exc)
    if isinstance(exc, yaml.YAMLError):  # e.g. a NUL or another control character (ReaderError)
        line = text.count("\n", 0, getattr(exc, "position", 0) or 0) + 1
        return line, getattr(exc, "reason", None) or str(exc).splitlines()[0]
    if isinstance(exc, RecursionError):
        return 1, "nested too deeply"
    return _unreadable_scalar_line(text), f"a value YAML cannot read: {str(exc).split(';')[0]}"


def _unreadable_scalar_line(text: str) -> int:
    """The line of the first scalar the safe constructor refuses with ValueError (1 if none).
    Each node is looked at once: aliases share nodes (a "billion laughs" file stays cheap)."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except YAML_FAILURES:
        return 1
    constructor = yaml.SafeLoader("")
    stack, seen = ([root] if root is not None else []), set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                constructor.construct_object(node)
            except ValueError:
                return node.start_mark.line + 1
            except yaml.YAMLError:
                continue
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in reversed(node.value) for part in reversed(pair))
    return 1


def load_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse once for data and once for positions; a syntax error names its line."""
    try:
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
        node = yaml.compose(text, Loader=_LOADER)
    except YAML_FAILURES as exc:
        line, reason = yaml_failure(exc, text)
        if isinstance(exc, RecursionError):
            raise SourceError([f"{source}:1: YAML nested too deeply"]) from exc
        kind = "YAML syntax error" if isinstance(exc, yaml.MarkedYAMLError) else "not YAML text"
        raise SourceError([f"{source}:{line}: {kind}: {reason}"]) from exc
    return data, node


def empty_node(node: yaml.Node) -> bool:
    """A value left out (``key:`` or ``? key``): it is marked where the next token starts,
    which for ``? key`` at the end of a text is past its last line; its key is the place."""
    return (isinstance(node, yaml.ScalarNode) and node.value == ""
            and node.start_mark.index == node.end_mark.index)


def line_of(node: yaml.Node | None, loc: Sequence[str | int]) -> int:
    """The line of the deepest node on ``loc`` that exists (1-based; 1 when unknown)."""
    best = node
    current = node
    for part in loc:
        if isinstance(current, yaml.MappingNode):
            pair = next(((k, v) for k, v in current.value if k.value == part), None)
            current = None if pair is None else pair[0] if empty_node(pair[1]) else pair[1]
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            current = current.value[part] if part < len(current.value) else None
        else:
            current = None
        if current is None:
            break
        best = current
    if best is None or (best is node and empty_node(best)):  # nothing but "---": line 1
        return 1
    return best.start_mark.line + 1


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
