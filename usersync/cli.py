"""`usersync` command line. Each command loads and validates the config first (which file:
`usersync.config_file`); an option may be given before or after the command and its
subcommand alike (`usersync dlq --config X list` is `usersync dlq list --config X`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import structlog

from config import ConfigError, Settings, load_settings
from config.ingress import SourceSettings
from core.logs import configure_logging
from core.signing import signature_headers
from usersync.client import Answer, GatewayUnreachable, call
from usersync.config_file import ROLE_NEEDS, NoConfig, check_config, config_path
from usersync.supervisor import ChildOrders


def _run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _option(args: argparse.Namespace, name: str) -> Any:
    """An option that may be given at any level: absent (not None) where it was not."""
    return getattr(args, name, None)


def _config_path(args: argparse.Namespace) -> str:
    try:
        return config_path(_option(args, "config"), args.command)
    except NoConfig as exc:
        print(f"usersync: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _load(args: argparse.Namespace) -> Settings:
    return _load_path(_config_path(args))


def _load_path(path: str) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(f"usersync: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _gateway_url(args: argparse.Namespace, settings: Settings) -> str:
    if _option(args, "url"):
        return str(_option(args, "url")).rstrip("/")
    host = settings.gateway.host if settings.gateway.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{settings.gateway.port}"


def _source_token(args: argparse.Namespace, settings: Settings) -> str | None:
    token = _option(args, "token") or os.environ.get("USERSYNC_TOKEN")
    if token:
        return str(token)
    token = settings.sources[0].token if settings.sources else None
    return token.get_secret_value() if token is not None else None


def _admin_token(args: argparse.Namespace, settings: Settings) -> str | None:
    token = _option(args, "token") or os.environ.get("USERSYNC_ADMIN_TOKEN")
    if token:
        return str(token)
    admin = settings.gateway.admin_token
    return admin.get_secret_value() if admin else _source_token(args, settings)


def _signer(
    args: argparse.Namespace, settings: Settings, token: str | None
) -> SourceSettings | None:
    """The source that signs the request instead of a bearer token: the config's first source,
    with --sign, or when no token is known in clear and that source has an hmac_secret."""
    first = settings.sources[0] if settings.sources else None
    can_sign = first is not None and first.hmac_secret is not None
    sign = bool(_option(args, "sign"))
    if sign and not can_sign:
        print("usersync: --sign needs an hmac_secret on the config's first source", file=sys.stderr)
        raise SystemExit(2)
    return first if sign or (token is None and can_sign) else None


def _source_call(
    method: str, url: str, token: str | None, signer: SourceSettings | None, body: bytes | None
) -> Answer:
    """A call as a source: signed by `signer` (over the exact body; b"" for a GET), else with
    the bearer `token`."""
    if signer is None or signer.hmac_secret is None:
        answer: Answer = _run_async(call(method, url, token, body))
        return answer
    secret = signer.hmac_secret.get_secret_value()
    headers = signature_headers(signer.name, secret, body or b"")
    answer = _run_async(call(method, url, None, body, headers))
    return answer


def _print(answer: Answer) -> int:
    sys.stdout.write(orjson.dumps(answer.body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if answer.status < 400 else 1


def _read_file(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()


def cmd_serve(args: argparse.Namespace) -> int:
    from usersync import runtime

    path = _config_path(args)
    settings = _load_path(path)
    configure_logging(settings.logging.level, fmt=settings.logging.format)
    child = ChildOrders.from_env() if args.command == "gateway" else None
    missing = [section for section in ROLE_NEEDS[args.command] if not getattr(settings, section)]
    if missing and child is None:  # its supervisor said so
        structlog.get_logger("usersync").warning(
            "config_incomplete", config=path, role=args.command, empty=missing
        )
    parts = {
        "run": dict(gateway=True, worker=True, sandbox=settings.sandbox.enabled, embedded=True),
        "gateway": dict(gateway=True, worker=False, sandbox=False, embedded=False),
        "worker": dict(gateway=False, worker=True, sandbox=False, embedded=False),
        "sandbox": dict(gateway=False, worker=False, sandbox=True, embedded=False),
    }[args.command]
    try:
        _run_async(runtime.run(settings, **parts, config_path=path, child=child))
    except ConfigError as exc:
        print(f"usersync: invalid configuration: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    return check_config(_config_path(args), args.role)


def cmd_send(args: argparse.Namespace) -> int:
    settings = _load(args)
    path = "/v1/events:preview" if args.command == "preview" else "/v1/events"
    url = _gateway_url(args, settings) + path
    token = _source_token(args, settings)
    signer = _signer(args, settings, token)
    return _print(_source_call("POST", url, token, signer, _read_file(args.file)))


def cmd_status(args: argparse.Namespace) -> int:
    settings = _load(args)
    url = f"{_gateway_url(args, settings)}/v1/events/{args.event_id}"
    token = _admin_token(args, settings)
    return _print(_source_call("GET", url, token, _signer(args, settings, token), None))


def cmd_links(args: argparse.Namespace) -> int:
    settings = _load(args)
    base = f"{_gateway_url(args, settings)}/v1/users/{args.user_id}/links"
    token = _admin_token(args, settings)
    if args.links_command == "get":
        url = f"{base}/{args.vendor}" if args.vendor else base
        return _print(_run_async(call("GET", url, token)))
    body = orjson.dumps({"id": args.vendor_id})
    return _print(_run_async(call("PUT", f"{base}/{args.vendor}", token, body)))


def cmd_users(args: argparse.Namespace) -> int:
    """Users' state through the admin API: `reset-ordering` clears the order keys a poisoned
    event left (`DELETE /v1/users/{user_id}/ordering`)."""
    settings = _load(args)
    url = f"{_gateway_url(args, settings)}/v1/users/{quote(args.user_id, safe='')}/ordering"
    if args.vendor is not None:
        url += "?" + urlencode({"vendor": args.vendor})
    return _print(_run_async(call("DELETE", url, _admin_token(args, settings))))


def cmd_dlq(args: argparse.Namespace) -> int:
    """Dead letters through the admin API; replay and purge take ids, or --vendor, or --all."""
    settings = _load(args)
    base = f"{_gateway_url(args, settings)}/v1/dead-letters"
    token = _admin_token(args, settings)
    if args.dlq_command == "list":
        query = {
            "vendor": args.vendor,
            "source": args.source,
            "limit": args.limit,
            "cursor": args.cursor,
        }
        given = {name: value for name, value in query.items() if value is not None}
        url = f"{base}?{urlencode(given)}" if given else base
        return _print(_run_async(call("GET", url, token)))
    if args.dlq_command == "show":
        return _print(_run_async(call("GET", f"{base}/{quote(args.id, safe=':')}", token)))
    chosen = [bool(args.ids), args.vendor is not None, args.all]
    if sum(chosen) != 1:
        print(
            f"usersync dlq {args.dlq_command}: give dead-letter ids, or --vendor NAME, or --all",
            file=sys.stderr,
        )
        return 2
    replay = args.dlq_command == "replay"
    if args.ids:
        method, suffix = ("POST", "/replay") if replay else ("DELETE", "")
        codes = [
            _print(_run_async(call(method, f"{base}/{quote(i, safe=':')}{suffix}", token)))
            for i in args.ids
        ]
        return max(codes)
    scope: dict[str, Any] = {"vendor": args.vendor} if args.vendor is not None else {"all": True}
    if replay:
        return _print(_run_async(call("POST", f"{base}:replay", token, orjson.dumps(scope))))
    purge = urlencode({"vendor": args.vendor} if args.vendor is not None else {"all": "true"})
    return _print(_run_async(call("DELETE", f"{base}?{purge}", token)))


def cmd_kinds(args: argparse.Namespace) -> int:
    """The registered vendor kinds: the values a vendor instance's `kind` may take."""
    from workers.vendors.registry import KINDS

    width = max((len(name) for name in KINDS), default=0)
    for name, kind in KINDS.items():
        print(f"{name:<{width}}  {kind.summary} (sandbox demo user {kind.demo_user_id})")
    return 0


def cmd_vendors(args: argparse.Namespace) -> int:
    settings = _load(args)
    url = f"{_gateway_url(args, settings)}/v1/vendors"
    return _print(_run_async(call("GET", url, _admin_token(args, settings))))


CONFIG_HELP = "config file (default: $USERSYNC_CONFIG, ./usersync.yaml, /etc/usersync/config.yaml)"


def build_parser() -> argparse.ArgumentParser:
    """Options shared by several commands are declared on every level (the program, the
    command, the subcommand) with no default (SUPPRESS), so one given at any level is kept:
    a level where it is absent does not overwrite it with a default."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    client = argparse.ArgumentParser(add_help=False, parents=[common])
    client.add_argument(
        "--url", default=argparse.SUPPRESS, help="gateway base URL (default: from the config)"
    )
    client.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="bearer token (default: $USERSYNC_TOKEN / $USERSYNC_ADMIN_TOKEN)",
    )
    parser = argparse.ArgumentParser(prog="usersync", description=__doc__, parents=[client])
    parser.add_argument("--version", action="version", version=f"usersync {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    for name, text in (
        ("run", "gateway and worker in one process (embedded Redis when redis.url is unset)"),
        ("gateway", "the HTTP gateway only"),
        ("worker", "a delivery worker only"),
        ("sandbox", "local simulators of the registered vendor kinds"),
    ):
        commands.add_parser(name, parents=[common], help=text).set_defaults(handler=cmd_serve)
    check = commands.add_parser(
        "check-config", parents=[common], help="validate the config: every problem at once"
    )
    check.add_argument(
        "--role",
        choices=sorted(ROLE_NEEDS),
        default="run",
        help="the process the file is for: what it must configure (gateway: sources and "
        "vendors; worker: vendors; run: both; sandbox: neither). Default: run",
    )
    check.set_defaults(handler=cmd_check_config)
    commands.add_parser(
        "kinds", parents=[common], help="the registered vendor kinds (a vendor instance's `kind`)"
    ).set_defaults(handler=cmd_kinds)
    signing = argparse.ArgumentParser(add_help=False, parents=[client])
    signing.add_argument(
        "--sign",
        action="store_true",
        default=argparse.SUPPRESS,
        help="sign with the first source's hmac_secret instead of sending a token (the default "
        "when that source has an hmac_secret and no token is known in clear)",
    )
    for name, text in (("send", "post an event file"), ("preview", "preview an event file")):
        sub = commands.add_parser(name, parents=[signing], help=text)
        sub.add_argument("file", help="JSON event file, or - for standard input")
        sub.set_defaults(handler=cmd_send)
    status = commands.add_parser("status", parents=[signing], help="per-target status of an event")
    status.add_argument("event_id")
    status.set_defaults(handler=cmd_status)
    links = commands.add_parser("links", parents=[client], help="identity links (admin)")
    link_commands = links.add_subparsers(dest="links_command", required=True)
    get = link_commands.add_parser("get", parents=[client])
    get.add_argument("user_id")
    get.add_argument("vendor", nargs="?", help="one vendor instance (default: all)")
    put = link_commands.add_parser("set", parents=[client])
    put.add_argument("user_id")
    put.add_argument("vendor")
    put.add_argument("vendor_id")
    links.set_defaults(handler=cmd_links)
    users = commands.add_parser("users", parents=[client], help="users' state (admin)")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    reset = user_commands.add_parser(
        "reset-ordering",
        parents=[client],
        help="clear a user's ordering state, so the next change of each field is sent",
    )
    reset.add_argument("user_id")
    reset.add_argument(
        "--vendor", help="only this vendor instance (default: all, and the name profile)"
    )
    users.set_defaults(handler=cmd_users)

    dlq = commands.add_parser("dlq", parents=[client], help="dead letters (admin)")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_commands.add_parser("list", parents=[client], help="newest first")
    listing.add_argument("--vendor", help="only this vendor instance's letters")
    listing.add_argument("--source", help="only this source's letters")
    listing.add_argument("--limit", type=int, help="at most this many (1-1000, default 100)")
    listing.add_argument("--cursor", help="the next_cursor of the previous page")
    show = dlq_commands.add_parser("show", parents=[client], help="one letter, secrets masked")
    show.add_argument("id", help="dead-letter id: source:event_id:vendor")
    for name, text in (
        ("replay", "send again (through ordering: never over newer data)"),
        ("purge", "drop from the queue (the event stays dead)"),
    ):
        sub = dlq_commands.add_parser(name, parents=[client], help=text)
        sub.add_argument("ids", nargs="*", metavar="ID", help="dead-letter ids")
        sub.add_argument("--vendor", help="every letter of this vendor instance")
        sub.add_argument("--all", action="store_true", help="every letter")
    dlq.set_defaults(handler=cmd_dlq)
    commands.add_parser(
        "vendors", parents=[client], help="circuit, rate, calls and usage of each vendor (admin)"
    ).set_defaults(handler=cmd_vendors)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("usersync")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except GatewayUnreachable as exc:
        print(f"usersync: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
