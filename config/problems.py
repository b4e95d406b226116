"""Where a configuration problem is, said the way people read the file.

A problem found by validation has pydantic's location (`("sources", 3, "token")`); people
read `sources[hris].token`, at line 12 of their file, and for a misspelt key a guess at what
they meant. `Locator` turns the one into the other from the parsed tree (names of list
items) and the composed YAML nodes (PyYAML's `compose` keeps each node's position).
"""

from __future__ import annotations

import difflib
import types
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file: `path` as people read it ("" for the whole file)."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class Locator:
    """Key paths of one file: display names, line numbers, and close matches of field names."""

    def __init__(self, tree: Any, root: yaml.Node | None, model: type[BaseModel]) -> None:
        self.tree = tree
        self.root = root
        self.model = model

    def problem(self, loc: Loc, message: str, *, unknown_key: bool = False) -> Problem:
        """The problem at `loc`; `unknown_key`: the last part is a key the model does not
        have, so the message says so and guesses the field meant."""
        if unknown_key and loc:
            message = f"unknown key {loc[-1]!r}"
            guess = self.close_field(loc[:-1], str(loc[-1]))
            if guess is not None:
                message += f" (did you mean {guess!r}?)"
        return Problem(self.display(loc), message, self.line(loc))

    def display(self, loc: Loc) -> str:
        """`sources[hris].token`: a list item by its `name` (its index when it has none),
        anything else by its key. A part the file does not have is shown only when it is
        the last (a missing or unknown key); before that it is one of pydantic's type tags."""
        parts: list[str] = []
        data: Any = self.tree
        for n, part in enumerate(loc):
            if part == "[key]":
                continue
            if isinstance(data, list):
                index = _list_index(data, part)
                item = data[index] if index is not None else None
                name = item.get("name") if isinstance(item, dict) else None
                label = name if isinstance(name, str) and name else part
                parts.append(f"[{label}]")
                data = item
            elif isinstance(data, dict) and part in data:
                parts.append(f".{part}")
                data = data[part]
            elif n == len(loc) - 1 or data is None:
                parts.append(f".{part}")
                data = None
        return "".join(parts).lstrip(".")

    def line(self, loc: Loc) -> int | None:
        """The 1-based line of the deepest node of `loc` found in the file: a key's own line
        for a mapping entry, the item's for a list entry, the enclosing one for a key that
        is missing."""
        node = self.root
        data: Any = self.tree
        found = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            if node is None:
                break
            if isinstance(node, yaml.MappingNode):
                pair = next((kv for kv in node.value if _scalar(kv[0]) == str(part)), None)
                if pair is None:
                    continue  # a type tag, or a key the file lacks: keep the enclosing line
                found = pair[0].start_mark.line + 1
                node = pair[1]
                data = data.get(part) if isinstance(data, dict) else None
            elif isinstance(node, yaml.SequenceNode):
                index = _list_index(data, part) if isinstance(data, list) else None
                if index is None or index >= len(node.value):
                    continue
                node = node.value[index]
                found = node.start_mark.line + 1
                data = data[index]
            else:
                break
        return found

    def close_field(self, loc: Loc, key: str) -> str | None:
        """The field of the model at `loc` closest to `key`, when one is close enough."""
        model = model_at(self.model, loc)
        if model is None:
            return None
        matches = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
        return matches[0] if matches else None


def model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The settings model found at `loc` below `model` (through lists, dicts and optionals),
    or None when `loc` leads elsewhere."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = _unwrap(field.annotation)
        elif get_origin(current) is list:
            current = _unwrap(get_args(current)[0])
        elif get_origin(current) is dict:
            current = _unwrap(get_args(current)[1])
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """`Annotated[X, ...]` -> X; `X | None` -> X (the first member that is a model or a
    container)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        for member in get_args(annotation):
            unwrapped = _unwrap(member)
            if get_origin(unwrapped) in (list, dict) or (
                isinstance(unwrapped, type) and issubclass(unwrapped, BaseModel)
            ):
                return unwrapped
    return annotation


def _list_index(items: list[Any], part: str | int) -> int | None:
    """A list item by index, or by its `name` (how cross-section checks name sources)."""
    if isinstance(part, int):
        return part if 0 <= part < len(items) else None
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return index
    return None


def _scalar(node: yaml.Node) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None
