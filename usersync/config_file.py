"""Which config file a command uses, and `usersync check-config`.

The search order: `--config PATH`, else `$USERSYNC_CONFIG`, else `./usersync.yaml`, else
`/etc/usersync/config.yaml`. Only when none of them exists does a command fall back to
`config/sandbox.yaml` in the current directory, the sandbox's demo config, and then it says
so on stderr, naming the file and that its tokens are public; the serving commands `run`,
`gateway` and `worker` never fall back (they would accept the demo tokens): they stop and
say what to give.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from config import ConfigError
from config.loader import ConfigReport, check_file
from config.problems import Problem
from config.settings import Settings

SEARCH_PATH = ("./usersync.yaml", "/etc/usersync/config.yaml")
"""Where a config is looked for when neither --config nor $USERSYNC_CONFIG names one."""
SANDBOX_CONFIG = "config/sandbox.yaml"
"""The sandbox's demo config (public tokens and keys): a fallback for the tools only."""
SERVING_COMMANDS = frozenset({"run", "gateway", "worker"})
"""Commands that never fall back to the sandbox config."""
ROLE_NEEDS: dict[str, tuple[str, ...]] = {
    "run": ("sources", "vendors"),
    "gateway": ("sources", "vendors"),
    "worker": ("vendors",),
    "sandbox": (),
}
"""What each role cannot work without: the gateway authenticates sources and routes their
events to vendor instances; a worker delivers to vendor instances."""
SECTION_PURPOSE = {
    "sources": "every event would be refused (401): nobody can post",
    "vendors": "there is nothing to deliver to",
}


class NoConfig(Exception):
    """No config file was given or found where one is looked for."""


def config_path(given: str | None, command: str) -> str:
    """The config file `command` uses (see the module's docstring); NoConfig if none."""
    if given:
        return given
    from_env = os.environ.get("USERSYNC_CONFIG")
    if from_env:
        return from_env
    for candidate in SEARCH_PATH:
        if Path(candidate).is_file():
            return candidate
    searched = f"--config, $USERSYNC_CONFIG, {', '.join(SEARCH_PATH)}"
    if command not in SERVING_COMMANDS and Path(SANDBOX_CONFIG).is_file():
        print(
            f"usersync: WARNING: no config file given or found ({searched}): using "
            f"{SANDBOX_CONFIG}, the sandbox's demo config; its tokens and keys are public, "
            "never use it for real data",
            file=sys.stderr,
        )
        return SANDBOX_CONFIG
    hint = f" ({SANDBOX_CONFIG} is the sandbox's demo config: pass it with --config)"
    raise NoConfig(
        f"no config file: none given or found ({searched})"
        + (hint if Path(SANDBOX_CONFIG).is_file() else "")
    )


def role_problems(report: ConfigReport, settings: Settings, role: str) -> list[Problem]:
    """A section `role` needs that the file leaves empty (see ROLE_NEEDS)."""
    problems = []
    for section in ROLE_NEEDS[role]:
        if not getattr(settings, section):
            problems.append(
                report.locate(
                    section,
                    f"none configured, and `usersync {role}` needs them: "
                    f"{SECTION_PURPOSE[section]}",
                )
            )
    return problems


def check_config(path: str, role: str) -> int:
    """`usersync check-config`: every problem of the file in one report (values, unknown
    keys, cross-section checks, each vendor's kind and role map, what `role` needs), exit 2;
    else a summary and 0."""
    from workers.vendors.registry import build_adapters

    report = check_file(path)
    settings = report.settings or report.partial
    if settings is not None:
        try:
            build_adapters(settings)
        except ConfigError as exc:
            for text in str(exc).split("; "):
                dotted, _, message = text.partition(": ")
                report.problems.append(report.locate(dotted, message))
        report.problems += role_problems(report, settings, role)
    if report.problems:
        print(f"usersync: invalid configuration: {report.error()}", file=sys.stderr)
        return 2
    assert settings is not None
    vendors = ", ".join(f"{name} ({v.kind})" for name, v in settings.vendors.items()) or "none"
    sources = len(settings.sources)
    print(f"configuration OK ({path}, role {role}): {sources} source(s), vendors: {vendors}")
    keys = len(settings.secrets.keys)
    print(
        f"secrets: {keys} key(s), passwords are encrypted in Redis"
        if keys
        else "secrets: not configured (secrets.keys is empty): events carrying a password "
        "are refused with 422 secrets_not_configured"
    )
    return 0
