"""Reads the YAML file, interpolates `${VAR}` from the environment, validates into Settings.

Interpolation happens on the parsed tree, not the text, so a missing variable is reported
with the key path that needs it and a value can never break the YAML syntax.

Every problem of a file is reported at once (`check_file`), each with the key path as
people read it (`sources[hris].token`), its line in the file and, for a misspelt key, the
field it was probably meant to be (`config.problems`): missing variables, invalid values,
unknown keys, and the checks across sections, which pydantic runs only on a file whose
values are all valid, so they are run again on what remains once the invalid parts are
set aside.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from config.common import SKIP_CROSS_CHECKS, SettingsProblems
from config.problems import Loc, Locator, Problem
from config.settings import Settings

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_LISTED = ("sources",)
"""Top-level lists whose items have a `name` (set aside one by one when invalid)."""
_NAMED = ("vendors",)
"""Top-level mappings of named instances (set aside one by one when invalid)."""


class ConfigError(Exception):
    """The configuration cannot be used; the message names each offending key path."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclass
class ConfigReport:
    """What `check_file` found: the settings when the file is valid, else its problems and,
    for further checks (`usersync check-config`), what of it did validate."""

    path: str
    settings: Settings | None = None
    partial: Settings | None = None
    problems: list[Problem] = field(default_factory=list)
    locator: Locator | None = None

    def locate(self, dotted: str, message: str) -> Problem:
        """A problem reported as `key.path: message` elsewhere (the vendor registry), placed
        in this file."""
        loc: Loc = tuple(int(part) if part.isdigit() else part for part in dotted.split("."))
        if self.locator is None:
            return Problem(dotted, message)
        return self.locator.problem(loc, message)

    def error(self) -> ConfigError:
        """The problems as one error, in the order of the file's lines."""
        self.problems.sort(key=lambda problem: problem.line or 0)
        lines = "\n  ".join(str(problem) for problem in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        return ConfigError(f"{self.path}: {count} {noun}:\n  {lines}", self.problems)


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate the config file at `path`, taking `${VAR}` values from `env`;
    ConfigError lists every problem."""
    report = check_file(path, env)
    if report.settings is None:
        raise report.error()
    return report.settings


def check_file(path: str | Path, env: Mapping[str, str] | None = None) -> ConfigReport:
    """Every problem of the config file at `path` (see the module's docstring)."""
    environ = os.environ if env is None else env
    report = ConfigReport(str(path))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        report.problems.append(Problem("", f"cannot read: {exc.strerror}"))
        return report
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        report.problems.append(Problem("", f"not valid YAML: {exc}", _yaml_line(exc)))
        return report
    if raw is None:
        report.problems.append(Problem("", "the file is empty (it holds no settings)", 1))
        return report
    if not isinstance(raw, dict):
        report.problems.append(Problem("", "the top level must be a mapping", 1))
        return report
    missing: list[Loc] = []
    tree = _interpolate(raw, (), environ, missing)
    locator = Locator(tree, root, Settings)
    report.locator = locator
    for loc in missing:
        report.problems.append(
            locator.problem(loc[:-1], f"environment variable {loc[-1]} is not set")
        )
    unset = {loc[:-1] for loc in missing}
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        found = _problems(exc, locator)
        report.problems += [problem for loc, problem in found if loc not in unset]
        pruned, gone = _set_aside(tree, exc)
        if any(loc for loc, _ in found):  # the cross-section checks did not run: run them
            report.problems += _cross_problems(pruned, locator, gone)
        report.partial = _without_cross_checks(pruned)
        return report
    if report.problems:
        report.partial = settings
        return report
    report.settings = settings
    return report


def _problems(exc: ValidationError, locator: Locator) -> list[tuple[Loc, Problem]]:
    """Each error of a validation, placed; the cross-section ones (raised together as
    `SettingsProblems`, at the top level) one by one."""
    found: list[tuple[Loc, Problem]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        problems = error.get("ctx", {}).get("error")
        if not loc and isinstance(problems, SettingsProblems):
            for text in problems.problems:
                dotted, _, message = text.partition(": ")
                found.append(((), _dotted(locator, dotted, message)))
            continue
        extra = error["type"] == "extra_forbidden"
        message = error["msg"].removeprefix("Value error, ")
        found.append((loc, locator.problem(loc, message, unknown_key=extra)))
    return found


def _dotted(locator: Locator, dotted: str, message: str) -> Problem:
    loc: Loc = tuple(int(part) if part.isdigit() else part for part in dotted.split("."))
    return locator.problem(loc, message)


def _set_aside(tree: dict[str, Any], exc: ValidationError) -> tuple[dict[str, Any], list[str]]:
    """The tree without what failed: an invalid source or vendor instance, else the whole
    invalid section (its defaults stand in); and how what was set aside is named in the
    messages of the cross-section checks."""
    pruned = dict(tree)
    gone: list[str] = []
    drop_items: dict[str, set[Any]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        if not loc:
            continue
        section = str(loc[0])
        if section in _LISTED + _NAMED and len(loc) > 1:
            drop_items.setdefault(section, set()).add(loc[1])
        else:
            pruned.pop(section, None)
            gone.append(f"{section}.")
    for section, items in drop_items.items():
        value = pruned.get(section)
        if isinstance(value, list):
            kept = [item for n, item in enumerate(value) if n not in items]
            gone += [_item_label(section, item) for n, item in enumerate(value) if n in items]
            pruned[section] = kept
        elif isinstance(value, dict):
            pruned[section] = {k: v for k, v in value.items() if k not in items}
            gone += [f"{section}.{k}." for k in items] + [f"'{k}'" for k in items]
    return pruned, gone


def _item_label(section: str, item: Any) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"{section}.{name}." if isinstance(name, str) else f"{section}.?"


def _cross_problems(pruned: dict[str, Any], locator: Locator, gone: list[str]) -> list[Problem]:
    """The cross-section problems of what is left once invalid parts are set aside, but
    those that involve a part set aside (echoes of problems already reported)."""
    try:
        Settings.model_validate(pruned)
    except ValidationError as exc:
        return [
            problem
            for loc, problem in _problems(exc, locator)
            if not loc
            and not any(
                mark in problem.message or problem.path.startswith(mark.rstrip("."))
                for mark in gone
            )
        ]
    return []


def _without_cross_checks(pruned: dict[str, Any]) -> Settings | None:
    """What of the file validates on its own (`usersync check-config` checks its vendors
    further), or None."""
    try:
        return Settings.model_validate(pruned, context={SKIP_CROSS_CHECKS: True})
    except ValidationError:
        return None


def _interpolate(node: Any, where: Loc, env: Mapping[str, str], missing: list[Loc]) -> Any:
    """`${VAR}` and `${VAR:-default}` replaced in every string of the tree; each variable
    that is not set is noted in `missing` as (key path..., variable name)."""
    if isinstance(node, dict):
        return {
            key: _interpolate(value, (*where, str(key)), env, missing)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(value, (*where, i), env, missing) for i, value in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append((*where, name))
        return ""

    return _VAR.sub(substitute, node)


def _yaml_line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None)
    return mark.line + 1 if mark is not None else None
