"""deploy/prometheus/alerts.yaml and deploy/grafana/usersync.json: promtool accepts the rules
and their unit tests pass, every metric the rules and the dashboard query is one a live
gateway or worker process exports, and docs/operations.md has a section for each alert."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from redis.asyncio import Redis

from tests.conftest import (
    Gateway,
    Sandbox,
    event,
    start_usersync,
    stop,
    wait_ready,
    write_config,
)
from tests.test_metrics import scrape
from usersync.redis_server import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "usersync.json"
OPERATIONS = ROOT / "docs" / "operations.md"
METRIC = re.compile(r"\b(?:usersync|process|python)_[a-z0-9_]+\b")
"""A metric name in a PromQL expression: ours, and prometheus_client's process metrics."""


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool; a missing promtool fails the test (never a skip): `.ci/run` installs it."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not on PATH: install Debian's `prometheus` package "
            "(`apt-get install -y --no-install-recommends prometheus`; .ci/run does)"
        )
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=60, check=False)


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    board = orjson.loads(DASHBOARD.read_bytes())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_alert_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts deploy/prometheus/alerts.yaml, every rule of it."""
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_alert_rules_fire_as_their_unit_tests_say() -> None:
    """`promtool test rules`: each alert fires on its series, with its labels and text, and a
    healthy deployment fires none."""
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    assert tested == {rule["alert"] for rule in alert_rules()}


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_its_section_in_the_operations_guide() -> None:
    """Each alert's `runbook` points at docs/operations.md, at a heading that exists."""
    text = OPERATIONS.read_text()
    anchors = {_anchor(h) for h in re.findall(r"^#{2,4} (.+)$", text, flags=re.MULTILINE)}
    for rule in alert_rules():
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/operations.md#{rule['alert'].lower()}", rule["alert"]
        assert runbook.split("#")[1] in anchors, rule["alert"]


def test_dashboard_panels_use_the_chosen_datasource() -> None:
    """Every panel and query of the dashboard reads the `datasource` variable, ids unique."""
    board = orjson.loads(DASHBOARD.read_bytes())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


async def test_every_queried_metric_is_exported_by_a_live_process(
    tmp_path: Path,
    redis_server: EmbeddedRedis,
    redis: Redis,
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
) -> None:
    """A real `usersync gateway` and `usersync worker` deliver an event; between the two
    /metrics pages, every metric name an alert or a dashboard panel queries is exported."""
    gateway_port, worker_port = free_port(), free_port()
    config = write_config(
        tmp_path,
        redis_server.url,
        sandbox.url,
        gateway={"port": gateway_port},
        worker={"metrics_port": worker_port},
    )
    processes = [start_usersync("gateway", config), start_usersync("worker", config)]
    gateway_url, worker_url = f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{worker_port}"
    try:
        await wait_ready(http, gateway_url)
        await wait_ready(http, worker_url)
        gateway = Gateway(gateway_url, http)
        assert (await gateway.post(event()))[0] == 202
        await gateway.wait_final("evt-1")
        exported = {name for name, _ in await scrape(http, gateway_url)}
        exported |= {name for name, _ in await scrape(http, worker_url)}
    finally:
        for process in processes:
            stop(process)
    queried = {
        name
        for expr in [*(rule["expr"] for rule in alert_rules()), *dashboard_exprs()]
        for name in METRIC.findall(expr)
    }
    assert len(queried) > 20
    assert sorted(queried - exported) == []
