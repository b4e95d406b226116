"""The cost of one log line: ns per line of the gateway's and the worker's hottest lines, with
the logging set-up before issue 15 and the one `core.logs.configure_logging` makes now, in one
run (same process, same machine load), written to a real file as a deployment writes stdout.

    .venv/bin/python bench/log_line.py [--lines N] [--rounds R]

Cases (the context a request or job binds, then the calls as the call sites make them, on
module-level loggers):
- `event_accepted`: the gateway's line per accepted event (request id, source, event id and
  user id bound; `targets` a list of four vendors), one per loop iteration.
- `delivery_attempt`: the worker's line per vendor call (vendor, user id, job try bound), one
  per iteration.
- `request (2 lines)`: `event_accepted` and the access line `http_request`, one request an
  iteration (a gateway under light load: the fewest lines a write).
- `16 requests/iter`: sixteen requests' lines in one iteration (a loaded gateway).
Timed inside a running uvloop event loop (as the CLI runs), the two set-ups' rounds
interleaved, the best of `--rounds` reported (the least disturbed by the other processes of a
shared machine) less an empty iteration's cost; this process's CPU time too. The "before"
set-up is a frozen copy of HEAD 5a618c6's `configure_logging` (structlog's processors, a write
per line), kept here so the comparison stays possible as `core.logs` changes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import structlog
import uvloop

from core import logs, redaction

REQUEST_ID = "9f2c4e1a7b3d4c5e8f90a1b2c3d4e5f6"
EVENT_ID = "evt-2026-11-29-000042"
USER_ID = "u-000042"
TARGETS = ["mileapp", "fleet-eu", "plaspy", "partoo"]


# --- the set-up before issue 15 (HEAD 5a618c6), frozen -----------------------------------------

_second: list[Any] = [-1, ""]


def _old_timestamp(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second[0] = second
    event_dict["timestamp"] = f"{_second[1]}.{int((now - second) * 1_000_000):06d}Z"
    return event_dict


_OLD_MAYBE = re.compile(
    rb"enc:v1:|bearer|basic|passw|secret|token|signature|authoriz|api_?key|cookie|credential"
)


def _old_render(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> bytes:
    line = orjson.dumps(event_dict, default=repr)
    if not _OLD_MAYBE.search(line.lower().replace(b"-", b"_")):
        return line
    return orjson.dumps(redaction.redact_secrets(logger, name, event_dict), default=repr)


_METHOD_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def _old_gate(_: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    if _METHOD_LEVELS.get(method_name, 20) < 20:
        raise structlog.DropEvent
    return event_dict


def configure_before(output: BinaryIO) -> None:
    """HEAD 5a618c6's structlog configuration for JSON lines at `info`."""
    structlog.configure(
        processors=[
            _old_gate,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _old_timestamp,
            structlog.processors.format_exc_info,
            _old_render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.BytesLoggerFactory(output),
        cache_logger_on_first_use=True,
    )


def configure_now(output: BinaryIO) -> None:
    """This checkout's configuration, as the CLI makes it (JSON lines, `info`)."""
    logs.configure_logging("info", output, fmt="json")


# --- the lines -----------------------------------------------------------------------------------


def accepted_line() -> None:
    """Where `gateway_context` is bound, the gateway's line per accepted event."""
    GATEWAY.info("event_accepted", source="hris", targets=TARGETS, outcome="accepted")


def access_line() -> None:
    """The access line of the same request."""
    ACCESS.info("http_request", method="POST", route="/v1/events", status=202, duration_ms=1.37)


def delivery_line() -> None:
    """Where `worker_context` is bound, the worker's line per vendor call."""
    WORKER.info(
        "delivery_attempt",
        event_id=EVENT_ID,
        event_ids=[EVENT_ID],
        coalesced=1,
        attempt=1,
        http_status=200,
        duration_ms=3.41,
        outcome="delivered",
    )


def request_lines() -> None:
    """A request's two lines, as one loop iteration of the gateway writes them."""
    accepted_line()
    access_line()


def gateway_context() -> None:
    """What a single post binds: the request id, the source, the event and user ids."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=REQUEST_ID, source="hris")
    structlog.contextvars.bind_contextvars(event_id=EVENT_ID, user_id=USER_ID)


def worker_context() -> None:
    """What a job binds: its try, then the pair's vendor and user."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_try=1)
    structlog.contextvars.bind_contextvars(vendor="fleet-eu", user_id=USER_ID)


GATEWAY = ACCESS = WORKER = structlog.get_logger()
"""Module-level loggers, as the call sites have them (structlog's lazy proxies), made anew
for each configuration (`new_loggers`): a proxy keeps the logger of its first use."""


def new_loggers() -> None:
    global GATEWAY, ACCESS, WORKER
    GATEWAY = structlog.get_logger("usersync.gateway")
    ACCESS = structlog.get_logger("usersync.access")
    WORKER = structlog.get_logger("usersync.worker")


def busy_lines() -> None:
    """Sixteen requests' lines in one iteration, as a loaded gateway's iteration has them."""
    for _ in range(16):
        accepted_line()
        access_line()


CASES: dict[str, tuple[Callable[[], None], Callable[[], None], int]] = {
    "event_accepted": (gateway_context, accepted_line, 1),
    "delivery_attempt": (worker_context, delivery_line, 1),
    "request (2 lines)": (gateway_context, request_lines, 2),
    "16 requests/iter": (gateway_context, busy_lines, 32),
}
"""Name: (context, the lines of one loop iteration, lines in it)."""
SETUPS: dict[str, Callable[[BinaryIO], None]] = {"before": configure_before, "now": configure_now}


def nothing() -> None:
    """The empty iteration: the loop's own cost, taken off every case."""


async def timed(lines: Callable[[], None], n: int) -> tuple[float, float]:
    """(wall ns, CPU ns) of `n` loop iterations each writing `lines`."""
    wall, cpu = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(n):
        lines()
        await asyncio.sleep(0)
    return (time.perf_counter_ns() - wall) / n, (time.process_time_ns() - cpu) / n


async def one_round(
    configure: Callable[[BinaryIO], None], folder: Path, n: int
) -> tuple[dict[str, tuple[float, float]], list[bytes]]:
    """Each case's (wall ns, CPU ns) per iteration with one set-up (the empty iteration's
    under `""`), written unbuffered (as stdout is with `PYTHONUNBUFFERED=1`, the image's
    setting) to a file; and a line of each case."""
    times: dict[str, tuple[float, float]] = {}
    with open(folder / "out.log", "wb", 0) as output:  # noqa: ASYNC230 - a benchmark's own file
        structlog.reset_defaults()
        configure(output)
        new_loggers()
        times[""] = await timed(nothing, n)
        for name, (context, lines, _) in CASES.items():
            context()
            await timed(lines, 50)  # warm: the cached logger, the regexes
            times[name] = await timed(lines, max(n // CASES[name][2], 100))
            output.seek(0)
            output.truncate()
        for context, lines in ((gateway_context, request_lines), (worker_context, delivery_line)):
            context()
            lines()
            await asyncio.sleep(0)
        sample = (folder / "out.log").read_bytes().splitlines()
    structlog.contextvars.clear_contextvars()
    return times, sample


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """The set-ups' rounds interleaved (the machine's load drifts), best round of each case
    less the best empty iteration, per line."""
    rounds: dict[str, list[dict[str, tuple[float, float]]]] = {name: [] for name in SETUPS}
    samples: dict[str, list[bytes]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for name, configure in SETUPS.items():
                times, samples[name] = await one_round(configure, Path(folder), args.lines)
                rounds[name].append(times)
    result: dict[str, Any] = {}
    for name, measured in rounds.items():
        empty = min(times[""] for times in measured)
        result[name] = {"sample": [orjson.loads(line) for line in samples[name]]}
        for case, (_, _, count) in CASES.items():
            best = min(times[case] for times in measured)
            result[name][case] = {
                "wall_ns": round((best[0] - empty[0]) / count),
                "cpu_ns": round((best[1] - empty[1]) / count),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000, help="lines per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, best reported")
    parser.add_argument("--show", action="store_true", help="print a line of each set-up")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as the CLI runs
        result = runner.run(main_async(args))
    print(f"ns per line, best of {args.rounds} rounds of {args.lines:,} lines, less the loop's own")
    print(f"{'line':<18} {'before':>8} {'now':>8} {'ratio':>6}   (CPU ns before -> now)")
    for name in CASES:
        before, now = result["before"][name], result["now"][name]
        print(
            f"{name:<18} {before['wall_ns']:>8,} {now['wall_ns']:>8,} "
            f"{before['wall_ns'] / now['wall_ns']:>5.2f}x   "
            f"({before['cpu_ns']:,} -> {now['cpu_ns']:,})"
        )
    if args.show:
        for which in ("before", "now"):
            for line in result[which]["sample"]:
                print(which, orjson.dumps(line).decode())


if __name__ == "__main__":
    main()
