"""The feed registry: which feeds to poll, how often, and how much to trust them.

A YAML file ``feeds: [...]`` read strictly: an unknown key, a bad value or a duplicate id
is an error that names the file, the line and the field, because a typo in a registry
otherwise silently turns a feed off.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from prevent.contracts import FeedKind
from prevent.platform.yamlsource import YAML_FAILURES, yaml_failure

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_LANG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


class FeedRegistryError(ValueError):
    """A registry file that cannot be used; the message names file, line and field."""

    def __init__(self, path: str | os.PathLike[str], message: str, *, line: int | None = None,
                 field: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")


class FeedConfig(BaseModel, extra="forbid"):
    id: str = Field(description="slug: lower-case letters, digits, '-' and '_'")
    url: str = Field(description="http(s) URL, or a file: path for local feeds")
    kind: FeedKind
    interval_seconds: int = Field(default=300, ge=10)
    language: str | None = None
    trust_weight: float = Field(default=1.0, ge=0, le=10)
    country: str | None = Field(default=None, description="default ISO 3166-1 alpha-2")
    region: str | None = None
    enabled: bool = True
    level_pattern: str | None = Field(
        default=None, description="threat_level only: a regex whose one group is the level")

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _SLUG.match(v):
            raise ValueError("must be a slug: lower-case letters, digits, '-' or '_' (max 64)")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        low = v.lower()
        if low.startswith(("http://", "https://")):
            if len(v.split("://", 1)[1].split("/", 1)[0]) == 0:
                raise ValueError("http(s) URL without a host")
            return v
        if low.startswith("file:") and len(v) > 5:
            return v
        raise ValueError("must be an http(s) URL or a file: path")

    @field_validator("language")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        if v is not None and not _LANG.match(v):
            raise ValueError("must be a language tag such as 'en' or 'pt-BR'")
        return v

    @field_validator("country")
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not _COUNTRY.match(v):
            raise ValueError("must be an ISO 3166-1 alpha-2 code such as 'GB'")
        return v.upper()

    @field_validator("level_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            groups = re.compile(v).groups
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if groups != 1:
            raise ValueError(f"must have exactly one group (the level), has {groups}")
        return v

    @model_validator(mode="after")
    def _threat_level_needs_pattern(self) -> FeedConfig:
        if self.kind is FeedKind.THREAT_LEVEL and self.level_pattern is None:
            raise ValueError("level_pattern is required for kind threat_level")
        if self.kind is not FeedKind.THREAT_LEVEL and self.level_pattern is not None:
            raise ValueError("level_pattern is only for kind threat_level")
        return self


# --------------------------------------------------------------------------- loading


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def _mapping_keys(path: Path, node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """Key -> (key node, value node); PyYAML keeps the last duplicate silently, we refuse."""
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in out:
            raise FeedRegistryError(path, f"duplicate key (first on line {_line(out[key][0])})",
                                    line=_line(key_node), field=key)
        out[key] = (key_node, value_node)
    return out


def _compose(path: Path, text: str) -> tuple[yaml.Node | None, Any]:
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # reads the text: a NUL is refused here already
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except YAML_FAILURES as exc:  # syntax, a refused character, too deep, an unreadable value
        line, reason = yaml_failure(exc, text)
        raise FeedRegistryError(path, f"invalid YAML: {reason}", line=line) from None
    finally:
        if loader is not None:
            loader.dispose()
    return node, data


def _explain(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    if isinstance(err.get("input"), bool) and err.get("type") == "string_type":
        # YAML 1.1 reads NO (Norway), yes, on, off as booleans.
        msg += " (YAML read it as a boolean: quote the value)"
    return msg


def _validate_item(path: Path, index: int, node: yaml.Node, data: Any) -> FeedConfig:
    where = f"feeds[{index}]"
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        raise FeedRegistryError(path, "each feed must be a mapping", line=_line(node), field=where)
    keys = _mapping_keys(path, node)
    try:
        return FeedConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ())]
        field = loc[0] if loc else None
        if field in keys:
            line = _line(keys[field][1] if err.get("type") != "extra_forbidden" else keys[field][0])
        else:
            line = _line(node)
        label = f"{where}.{field}" if field else where
        feed_id = data.get("id")
        if isinstance(feed_id, str):
            label += f" (id {feed_id!r})"
        raise FeedRegistryError(path, _explain(err), line=line, field=label) from None


def load_feeds(path: str | os.PathLike[str]) -> list[FeedConfig]:
    """Every feed in the registry file, validated; raises FeedRegistryError on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FeedRegistryError(path, f"cannot read: {exc}") from None
    node, data = _compose(path, text)
    if node is None:
        return []
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        raise FeedRegistryError(path, "expected a mapping with a 'feeds' list", line=_line(node))
    top = _mapping_keys(path, node)
    for key in top:
        if key != "feeds":
            raise FeedRegistryError(path, "unknown top-level key (only 'feeds')",
                                    line=_line(top[key][0]), field=key)
    if "feeds" not in top or data.get("feeds") is None:
        return []
    seq_node = top["feeds"][1]
    items = data["feeds"]
    if not isinstance(seq_node, yaml.SequenceNode) or not isinstance(items, list):
        raise FeedRegistryError(path, "must be a list", line=_line(seq_node), field="feeds")
    feeds: list[FeedConfig] = []
    first_line: dict[str, int | None] = {}
    for index, (item_node, item) in enumerate(zip(seq_node.value, items, strict=True)):
        feed = _validate_item(path, index, item_node, item)
        if feed.id in first_line:
            raise FeedRegistryError(
                path, f"duplicate id {feed.id!r} (first on line {first_line[feed.id]})",
                line=_line(item_node), field=f"feeds[{index}].id")
        first_line[feed.id] = _line(item_node)
        feeds.append(feed)
    return feeds


def dump_feeds(feeds: Iterable[FeedConfig]) -> str:
    """The YAML text of a registry; defaults are left out so files stay short."""
    items = [f.model_dump(mode="json", exclude_defaults=True) for f in feeds]
    return yaml.safe_dump({"feeds": items}, sort_keys=False, allow_unicode=True,
                          default_flow_style=False, width=100)


def save_feeds(path: str | os.PathLike[str], feeds: Sequence[FeedConfig]) -> None:
    """Write the registry atomically (temp file + rename): a crash never leaves half a file.

    Comments in a hand-edited file are not preserved.
    """
    path = Path(path)
    ids = [f.id for f in feeds]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise FeedRegistryError(path, f"duplicate ids: {', '.join(dupes)}", field="id")
    text = dump_feeds(feeds)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
