"""What each process measures and exports (`core.telemetry`, `core.metrics`,
`gateway.instruments`, `workers.instruments`, `workers.health`): requests by route template,
the delivery histograms, the backlog read from Redis, circuit transitions and waits, and
every /metrics still answering while Redis is down."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from config.settings import Settings
from core import __version__, keys
from core.telemetry import Telemetry
from tests.conftest import (
    USER_IDS,
    Gateway,
    Sandbox,
    event,
    log_lines,
    make_raw_settings,
    make_settings,
    running_gateway,
    start_usersync,
    stop,
    wait_ready,
    wait_until,
    write_config,
)
from tests.test_dead_letters import admin, post_final
from usersync import runtime
from usersync.redis_server import EmbeddedRedis, free_port
from workers.vendors.registry import build_adapters

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(url + "/metrics") as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(await response.text())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def named(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


async def test_gateway_counts_requests_by_route_template_and_status(gateway: Gateway) -> None:
    """Requests are counted and timed by route template (never the raw path: an unknown path
    is `unmatched`), method and status; events by source and outcome, a batch's each."""
    assert (await gateway.post(event("evt-1")))[0] == 202
    assert (await gateway.post(event("evt-1")))[0] == 200
    assert (await gateway.get("/v1/events/evt-1"))[0] == 200
    assert (await gateway.get("/v1/events/evt-none"))[0] == 404
    assert (await gateway.get("/no/such/path-123"))[0] == 404
    batch = {"events": [event("evt-2"), {"event_id": "bad"}]}
    assert (await gateway.post(batch, path="/v1/events:batch"))[0] == 200

    samples = await scrape(gateway.http, gateway.url)
    requests = named(samples, "usersync_gateway_requests_total")
    got = {(dict(k)["route"], dict(k)["method"], dict(k)["status"]): v for k, v in requests.items()}
    assert got[("/v1/events", "POST", "202")] == 1
    assert got[("/v1/events", "POST", "200")] == 1
    assert got[("/v1/events/{event_id}", "GET", "200")] == 1
    assert got[("/v1/events/{event_id}", "GET", "404")] == 1
    assert got[("unmatched", "GET", "404")] == 1
    assert got[("/v1/events:batch", "POST", "200")] == 1
    assert not [route for route, *_ in got if "evt-" in route or "path-123" in route]
    duration = "usersync_gateway_request_duration_seconds_count"
    assert value(samples, duration, route="/v1/events", method="POST") == 2
    assert value(samples, duration, route="/v1/events/{event_id}", method="GET") == 2
    ingested = "usersync_ingest_events_total"
    assert value(samples, ingested, source="hris", outcome="accepted") == 2
    assert value(samples, ingested, source="hris", outcome="duplicate") == 1
    assert value(samples, ingested, source="hris", outcome="refused") == 1
    assert value(samples, ingested, source="idp", outcome="accepted") == 0
    assert value(samples, "usersync_redis_up") == 1
    assert value(samples, "usersync_build_info", version=__version__) == 1
    assert value(samples, "process_resident_memory_bytes") > 0
    assert ("process_cpu_seconds_total", ()) in samples


async def test_metrics_answer_while_redis_is_down(
    tmp_path: Path, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """Redis stopped under a running gateway: /metrics still answers 200, with
    `usersync_redis_up 0`, the process metrics, and none of the values read from Redis (they
    would be stale); Redis back, they are back."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        settings = make_settings(server.url, sandbox.url)
        async with running_gateway(settings) as url:
            up = await scrape(http, url)
            assert value(up, "usersync_redis_up") == 1
            assert value(up, "usersync_queue_jobs") == 0
            server.stop()
            down = await scrape(http, url)
            assert value(down, "usersync_redis_up") == 0
            assert value(down, "process_resident_memory_bytes") > 0
            assert not [n for n, _ in down if n.startswith(("usersync_queue", "usersync_vendor"))]
            server.start()
            again = await scrape(http, url)
            assert value(again, "usersync_redis_up") == 1
            assert value(again, "usersync_vendor_waiting_deliveries", vendor="fleet-eu") == 0
    finally:
        server.stop()


async def test_one_process_exports_gateway_and_delivery_metrics(
    settings: Settings, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """As `usersync run`: one registry for the gateway and the worker. A delivered event gives
    each vendor one successful call timed, one delivery latency (from receipt to delivery),
    one `delivered`; the dead one counts `dead`; the worker reads as running."""
    telemetry = Telemetry()
    redis_url = settings.redis.url
    assert redis_url is not None
    adapters = build_adapters(settings)
    async with (
        runtime.running_gateway(settings, redis_url, adapters, telemetry) as url,
        runtime.running_worker(settings, redis_url, adapters, telemetry) as running,
    ):
        gateway = Gateway(url, http)
        await sandbox.fault("partoo", status=400, count=1)
        posted = time.time()
        states = await post_final(gateway, event())
        assert {t: s["status"] for t, s in states.items()} == {
            "mileapp": "delivered",
            "fleet-eu": "delivered",
            "plaspy": "delivered",
            "partoo": "dead",
        }
        assert running()
        samples = await scrape(http, url)
        scraped = time.time()
    calls = "usersync_vendor_call_duration_seconds_count"
    latency = "usersync_delivery_latency_seconds_count"
    for vendor in ("mileapp", "fleet-eu", "plaspy"):
        assert value(samples, calls, vendor=vendor, outcome="success") == 1
        assert value(samples, latency, vendor=vendor) == 1
        assert value(samples, "usersync_deliveries_total", vendor=vendor, status="delivered") == 1
    assert value(samples, calls, vendor="partoo", outcome="refused") == 1
    assert value(samples, latency, vendor="partoo") == 0
    assert value(samples, "usersync_deliveries_total", vendor="partoo", status="dead") == 1
    assert value(samples, "usersync_worker_running") == 1
    requests = "usersync_gateway_requests_total"
    assert value(samples, requests, route="/v1/events", method="POST", status="202") == 1
    # received after `posted` (to the ms), delivered before `scraped`: the latency lies within
    latency_s = value(samples, "usersync_delivery_latency_seconds_sum", vendor="mileapp")
    assert 0 < latency_s <= scraped - posted + 0.002


async def test_backlog_follows_the_waiting_deliveries(
    settings: Settings, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """Without a worker, two accepted events wait for each target: waiting 2, the oldest as old
    as the first event; delivered, the backlog reads 0; a dead one leaves it, a replayed one
    waits again."""
    async with running_gateway(settings) as url:
        gateway = Gateway(url, http)
        before_first = time.time()
        assert (await gateway.post(event("evt-1")))[0] == 202
        first_stored = time.time()
        other = {"id": "emp-43", "version": 1, "external_ids": USER_IDS}
        assert (await gateway.post(event("evt-2", user=other)))[0] == 202
        scraped_from = time.time()
        samples = await scrape(http, url)
        scraped_to = time.time()
        for vendor in ("mileapp", "fleet-eu", "plaspy", "partoo"):
            assert value(samples, "usersync_vendor_waiting_deliveries", vendor=vendor) == 2
            age = value(samples, "usersync_vendor_oldest_waiting_age_seconds", vendor=vendor)
            assert scraped_from - first_stored - 0.002 <= age <= scraped_to - before_first + 0.002
        assert await redis.zrange(keys.waiting("partoo"), 0, -1) == [b"hris:evt-1", b"hris:evt-2"]

        await sandbox.fault("partoo", status=400, count=1)
        async with runtime.running_worker(settings, url_of(settings), build_adapters(settings)):
            await gateway.wait_final("evt-1")
            await gateway.wait_final("evt-2")
        samples = await scrape(http, url)
        for vendor in ("mileapp", "fleet-eu", "plaspy", "partoo"):
            assert value(samples, "usersync_vendor_waiting_deliveries", vendor=vendor) == 0
            assert value(samples, "usersync_vendor_oldest_waiting_age_seconds", vendor=vendor) == 0
        assert value(samples, "usersync_vendor_dead_letters", vendor="partoo") == 1

        (letter,) = (await admin(gateway, "GET", "/v1/dead-letters"))[1]["dead_letters"]
        status, _ = await admin(gateway, "POST", f"/v1/dead-letters/{letter['id']}/replay")
        assert status == 202
        samples = await scrape(http, url)
        assert value(samples, "usersync_vendor_waiting_deliveries", vendor="partoo") == 1
        assert value(samples, "usersync_vendor_dead_letters", vendor="partoo") == 0


def url_of(settings: Settings) -> str:
    assert settings.redis.url is not None
    return settings.redis.url


async def test_circuit_transitions_and_waits_are_counted(
    redis_server: EmbeddedRedis, redis: Redis, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """One 503 opens Fleet's circuit (failure threshold 1): its retry waits (`open`); after the
    cool-down a probe succeeds: one transition each to open, half_open and closed. Plaspy at
    one call per 5 s: the second user's call waits for a slot (`rate`)."""
    raw = make_raw_settings(redis_server.url, sandbox.url)
    raw["vendors"]["fleet-eu"]["circuit_breaker"] = {"failure_threshold": 1, "cooldown_s": 2}
    raw["vendors"]["plaspy"]["rate_limit"] = {"per_second": 0.2, "burst": 1}
    settings = make_settings(redis_server.url, sandbox.url, vendors=raw["vendors"])
    telemetry = Telemetry()
    adapters = build_adapters(settings)
    await sandbox.fault("fleet", status=503, count=1)
    async with (
        runtime.running_gateway(settings, url_of(settings), adapters, telemetry) as url,
        runtime.running_worker(settings, url_of(settings), adapters, telemetry),
    ):
        gateway = Gateway(url, http)
        assert (await gateway.post(event("evt-1", targets=["fleet-eu", "plaspy"])))[0] == 202
        other = {"id": "emp-43", "version": 1, "external_ids": USER_IDS}
        assert (await gateway.post(event("evt-2", targets=["plaspy"], user=other)))[0] == 202
        fleet = await gateway.wait_final("evt-1", timeout_s=20)
        assert fleet["targets"]["fleet-eu"]["status"] == "delivered"

        async def rate_wait() -> bool:
            samples = parse((await telemetry.render()).decode())
            deferrals = "usersync_delivery_deferrals_total"
            return value(samples, deferrals, vendor="plaspy", reason="rate") >= 1

        await wait_until(rate_wait, 10, "plaspy's second call waiting for its rate slot")
        samples = await scrape(http, url)
    transitions = "usersync_vendor_circuit_transitions_total"
    for to in ("open", "half_open", "closed"):
        assert value(samples, transitions, vendor="fleet-eu", to=to) == 1
        assert value(samples, transitions, vendor="plaspy", to=to) == 0
    assert value(samples, "usersync_vendor_circuit_state", vendor="fleet-eu") == 0
    deferrals = "usersync_delivery_deferrals_total"
    assert value(samples, deferrals, vendor="fleet-eu", reason="open") >= 1
    assert value(samples, deferrals, vendor="fleet-eu", reason="rate") == 0
    calls = "usersync_vendor_call_duration_seconds_count"
    assert value(samples, calls, vendor="fleet-eu", outcome="failure") == 1
    assert value(samples, calls, vendor="fleet-eu", outcome="success") == 1
    assert value(samples, "usersync_deliveries_total", vendor="fleet-eu", status="failed") == 1


async def test_a_taken_metrics_port_stops_no_worker(
    settings: Settings, log_output: io.BytesIO
) -> None:
    """A worker whose `metrics_port` another process holds serves no metrics (an error line
    `worker_metrics_bind_failed` names the port) and goes on: metrics never stop deliveries."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        worker = settings.worker.model_copy(update={"metrics_port": port})
        taken = settings.model_copy(update={"worker": worker})
        http_app = runtime.running_worker_http(taken, url_of(settings), Telemetry(), lambda: True)
        async with http_app as url:
            assert url is None
    (line,) = [x for x in log_lines(log_output) if x["event"] == "worker_metrics_bind_failed"]
    assert (line["level"], line["port"]) == ("error", port)


async def probe(http: aiohttp.ClientSession, url: str) -> tuple[int, Mapping[str, Any]]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_worker_process_serves_metrics_health_and_readiness(
    tmp_path: Path, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """A real `usersync worker` on `worker.metrics_port`: ready (Redis answers, arq running),
    its /metrics with the delivery histograms and process metrics; Redis stopped, /healthz
    still 200, /readyz 503 naming Redis, /metrics 200 with `usersync_redis_up 0`."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    port = free_port()
    config = write_config(tmp_path, server.url, sandbox.url, worker={"metrics_port": port})
    process = start_usersync("worker", config)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(http, base)
        assert await probe(http, base + "/healthz") == (200, {"status": "ok"})
        samples = await scrape(http, base)
        assert value(samples, "usersync_worker_running") == 1
        assert value(samples, "usersync_redis_up") == 1
        bucket = "usersync_vendor_call_duration_seconds_bucket"
        assert value(samples, bucket, vendor="plaspy", outcome="success", le="+Inf") == 0
        assert value(samples, "usersync_delivery_latency_seconds_count", vendor="plaspy") == 0
        assert value(samples, "process_resident_memory_bytes") > 0
        assert not [n for n, _ in samples if n.startswith("usersync_gateway")]

        server.stop()
        assert await probe(http, base + "/healthz") == (200, {"status": "ok"})
        status, answer = await probe(http, base + "/readyz")
        assert (status, answer["error"]["code"]) == (503, "not_ready")
        assert answer["error"]["details"]["redis"] == "down"
        down = await scrape(http, base)
        assert value(down, "usersync_redis_up") == 0
    finally:
        stop(process)
        server.stop()
