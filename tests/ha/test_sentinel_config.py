"""`redis.sentinel` as `usersync check-config` sees it: `url` and `sentinel` never together,
a Sentinel needs its addresses and its master name, and a valid one passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BASE = """\
sources:
  - name: hris
    token: hris-token-0123456789
vendors:
  fleet-eu:
    kind: fleet
    base_url: http://127.0.0.1:1/api
    auth: {token: flt_sk_test}
    timeout_s: 2
"""


def check(tmp_path: Path, redis: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "usersync.yaml"
    path.write_text(BASE + redis)
    return subprocess.run(
        [sys.executable, "-m", "usersync", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


SENTINEL = """\
  sentinel:
    addresses: ["127.0.0.1:26379", "127.0.0.1:26380"]
    master: usersync
"""


@pytest.mark.parametrize(
    ("redis", "says"),
    [
        ("redis:\n  url: redis://127.0.0.1:6379/0\n" + SENTINEL, "not both"),
        ("redis:\n  sentinel:\n    master: usersync\n", "addresses"),
        ("redis:\n  sentinel:\n    addresses: []\n    master: usersync\n", "addresses"),
        ("redis:\n  sentinel:\n    addresses: ['127.0.0.1:26379']\n", "master"),
        ("redis:\n  sentinel:\n    addresses: ['127.0.0.1']\n    master: m\n", "addresses"),
        ("redis:\n  min_replicas_ack: -1\n  url: redis://127.0.0.1:6379/0\n", "min_replicas_ack"),
    ],
)
def test_a_wrong_redis_section_is_refused(tmp_path: Path, redis: str, says: str) -> None:
    """check-config exits 2 and names the problem of each faulty `redis` section."""
    result = check(tmp_path, redis)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stdout + result.stderr


def test_a_sentinel_section_passes(tmp_path: Path) -> None:
    """A `redis.sentinel` with addresses and a master, and min_replicas_ack, is valid."""
    result = check(tmp_path, "redis:\n" + SENTINEL + "  min_replicas_ack: 1\n")
    assert result.returncode == 0, result.stdout + result.stderr
