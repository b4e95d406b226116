"""`usersync check-config` as users run it: every problem of a file in one pass, each with its
line, sources and vendors by name, a guess for a misspelt key, an empty file refused, and
what each role needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VENDOR = """\
    kind: fleet
    base_url: http://127.0.0.1:1/api
    auth: {token: flt_sk_test}
"""

BROKEN = f"""\
gateway:
  port: eighty
  admn_token: {"a" * 20}
sources:
  - name: hris
    token: ${{CHECK_CONFIG_UNSET_VARIABLE}}
  - name: crm
    token: crm-token-0123456789
    allowed_targets: [ghost]
  - name: idp
    token: short
worker:
  job_timeout_s: 5
vendors:
  fleet-eu:
{VENDOR}    tiemout_s: 3
  partoo:
    kind: partoo
    base_url: http://127.0.0.1:1/v2
    auth: {{token: partoo-key}}
    timeout_s: 8
  fleet-us:
    kind: fleet
    base_url: http://127.0.0.1:1/api
    auth: {{token: flt_sk_us}}
    timeout_s: 2
    roles: {{admin: NOT_A_FLEET_ROLE}}
  mystery:
    kind: nope
    base_url: http://127.0.0.1:1
    auth: {{token: t}}
    timeout_s: 2
"""


def check(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHECK_CONFIG_UNSET_VARIABLE"}
    return subprocess.run(
        [sys.executable, "-m", "usersync", "check-config", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "usersync.yaml"
    path.write_text(text)
    return path


def test_every_problem_in_one_pass_with_its_line_name_and_guess(tmp_path: Path) -> None:
    """One run reports a missing variable, a bad value, two misspelt keys with the field
    meant, a short token, a source's unknown target, a timeout the worker's job timeout
    does not cover, an unmapped role and an unknown kind: each on its own line, with the
    file's line number, sources by name, exit 2."""
    result = check(write(tmp_path, BROKEN))
    assert result.returncode == 2, result.stdout
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    expected = [
        "line 2: gateway.port: Input should be a valid integer",
        "line 3: gateway.admn_token: unknown key 'admn_token' (did you mean 'admin_token'?)",
        "line 6: sources[hris].token: environment variable CHECK_CONFIG_UNSET_VARIABLE is not set",
        "line 9: sources[crm].allowed_targets: unknown vendor instances ['ghost']",
        "line 11: sources[idp].token: must be at least 16 characters",
        "line 19: vendors.fleet-eu.tiemout_s: unknown key 'tiemout_s' (did you mean 'timeout_s'?)",
        "line 24: vendors.partoo.timeout_s: 8.0 must be below worker.job_timeout_s (5)",
        "line 30: vendors.fleet-us.roles.admin",
        "line 32: vendors.mystery.kind: unknown kind 'nope'",
    ]
    assert len(problems) == len(expected), result.stderr
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), (problem, start)
    assert "9 problems" in result.stderr.splitlines()[0]
    assert "sources.0" not in result.stderr and "sources.1" not in result.stderr


@pytest.mark.parametrize("text", ["", "\n# nothing but a comment\n", "---\n"])
def test_an_empty_file_is_an_error(tmp_path: Path, text: str) -> None:
    """A file with no settings at all is refused, not called OK."""
    result = check(write(tmp_path, text))
    assert result.returncode == 2
    assert "the file is empty" in result.stderr
    assert "OK" not in result.stdout


@pytest.mark.parametrize(
    ("role", "missing"),
    [
        ("run", ["sources"]),
        ("gateway", ["sources"]),
        ("worker", []),
        ("sandbox", []),
    ],
)
def test_each_role_needs_its_sections(tmp_path: Path, role: str, missing: list[str]) -> None:
    """A file with vendors and no sources is fine for a worker (and the sandbox), an error
    for a gateway (nobody could post) and for `run`, naming the section and the role."""
    path = write(tmp_path, f"vendors:\n  fleet-eu:\n{VENDOR}")
    result = check(path, "--role", role)
    if not missing:
        assert result.returncode == 0, result.stderr
        assert f"role {role}" in result.stdout
        return
    assert result.returncode == 2
    assert f"sources: none configured, and `usersync {role}` needs them" in result.stderr


def test_a_gateway_needs_vendors_and_a_worker_too(tmp_path: Path) -> None:
    """Sources and no vendors: a gateway would route events nowhere, a worker deliver
    nowhere; both refused, the line of the empty section given."""
    path = write(tmp_path, f"sources:\n  - {{name: hris, token: {'h' * 20}}}\nvendors: {{}}\n")
    for role in ("gateway", "worker"):
        result = check(path, "--role", role)
        assert result.returncode == 2
        assert f"line 3: vendors: none configured, and `usersync {role}` needs them" in (
            result.stderr
        )
