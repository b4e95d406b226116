"""What the deployment tests share: the files' places, the venv's tools, `usersync check-config`
run with exactly the environment a deployment file gives it, and compose's interpolation."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A command the dev extra installs into the venv (hadolint, check-jsonschema, ...)."""
    path = BIN / name
    assert path.exists(), f"{name} is not installed: pip install -e '.[dev]'"
    return str(path)


def check_config(config: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`usersync check-config` as the container or unit runs it: `env` and nothing else of
    this machine's environment (a variable the file forgot to give would be caught)."""
    return subprocess.run(
        [sys.executable, "-m", "usersync", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=ROOT,
        check=False,
    )


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def secret_template_env() -> dict[str, str]:
    """The environment deploy/kubernetes/secret.example.yaml gives the usersync pods."""
    (secret,) = yaml_documents(KUBERNETES / "secret.example.yaml")
    assert secret["kind"] == "Secret"
    return {str(key): str(value) for key, value in secret["stringData"].items()}


_COMPOSE_VAR = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def compose_interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}` and `$$`, as
    `docker compose` resolves them from the shell's environment (here: `env`)."""
    if isinstance(node, dict):
        return {key: compose_interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [compose_interpolate(value, env) for value in node]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        if op == ":-":
            return value or arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?") and not value:
            raise ValueError(f"{name}: {arg or 'required'}")
        return value or ""

    return _COMPOSE_VAR.sub(substitute, node)


def compose_services(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """deploy/compose.yaml's services as compose sees them with the shell environment `env`
    (YAML anchors and merge keys resolved, variables interpolated)."""
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services: dict[str, dict[str, Any]] = compose_interpolate(loaded["services"], env)
    return services


def mounted_config(service: Mapping[str, Any]) -> Path:
    """The host file a compose service mounts at /etc/usersync/config.yaml."""
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if target == "/etc/usersync/config.yaml":
            return (DEPLOY / source).resolve()
    raise AssertionError("no config mounted at /etc/usersync/config.yaml")
