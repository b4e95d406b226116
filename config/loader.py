"""Reads the YAML file, interpolates `${VAR}` from the environment, validates into Settings.

Interpolation happens on the parsed tree, not the text, so a missing variable is reported
with the key path that needs it and a value can never break the YAML syntax.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from config.settings import Settings

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The configuration cannot be used; the message names each offending key path."""


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate the config file at `path`, taking `${VAR}` values from `env`."""
    environ = os.environ if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    problems: list[str] = []
    tree = _interpolate(raw, (), environ, problems)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(_describe(exc))) from exc


def _interpolate(
    node: Any, where: tuple[str, ...], env: Mapping[str, str], problems: list[str]
) -> Any:
    if isinstance(node, dict):
        return {
            key: _interpolate(value, (*where, str(key)), env, problems)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            _interpolate(value, (*where, str(i)), env, problems) for i, value in enumerate(node)
        ]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{'.'.join(where)}: environment variable {name} is not set")
        return ""

    return _VAR.sub(substitute, node)


def _describe(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"{location}: {error['msg']}")
    return lines
