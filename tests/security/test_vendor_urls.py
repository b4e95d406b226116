"""Vendor URLs carry a vendor id as exactly one encoded path segment, on the wire.

The vendor here is a raw asyncio TCP server on loopback (an aiohttp server would decode and
normalise the path before a test could see it): it records each request line as received.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from config.vendors import VendorSettings
from workers.errors import SchemaRefused
from workers.transport import send
from workers.vendors.fleet.adapter import FleetAdapter
from workers.vendors.interface import ChangeSet, VendorAdapter
from workers.vendors.partoo.adapter import PartooAdapter
from workers.vendors.plaspy.adapter import PlaspyAdapter

ENCODED = {
    "a;b": "a%3Bb",
    "a/b": "a%2Fb",
    "a%2Fb": "a%252Fb",
    "a?b": "a%3Fb",
    "a#b": "a%23b",
    "a b": "a%20b",
    "é": "%C3%A9",
}
"""Vendor ids with reserved characters, and the one path segment each must be sent as."""
REFUSED = ("..", ".")
"""Ids a server would resolve away (`/user/..` is `/`): refused before anything is sent."""
PATHS = {"partoo": ("POST", "/v2/user/"), "plaspy": ("PATCH", "/api/users/")}


@dataclass
class RawVendor:
    """A loopback TCP server answering every request 200 `{}`; keeps each request line."""

    url: str
    lines: list[str] = field(default_factory=list)


@pytest.fixture
async def raw_vendor() -> AsyncIterator[RawVendor]:
    vendor = RawVendor("")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        vendor.lines.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    vendor.url = f"http://127.0.0.1:{port}"
    async with server:
        yield vendor


def adapter(kind: str, base_url: str) -> VendorAdapter:
    settings = VendorSettings.model_validate(
        {"kind": kind, "base_url": base_url, "auth": {"token": "vendor-token-for-tests"}}
    )
    classes: dict[str, type[FleetAdapter | PartooAdapter | PlaspyAdapter]] = {
        "fleet": FleetAdapter,
        "partoo": PartooAdapter,
        "plaspy": PlaspyAdapter,
    }
    return classes[kind](kind, settings)


def change(vendor_user_id: str) -> ChangeSet:
    return ChangeSet(
        user_id="emp-42", vendor_user_id=vendor_user_id, changes={"email": "ada@example.com"}
    )


async def deliver(vendor: VendorAdapter, vendor_user_id: str) -> None:
    """Translate and send as the engine does (`workers.transport.send`)."""
    request = vendor.translate(change(vendor_user_id)).request
    assert request is not None
    async with aiohttp.ClientSession() as session:
        await send(session, request, timeout_s=5)


@pytest.mark.parametrize("kind", ["partoo", "plaspy"])
async def test_the_request_line_carries_exactly_the_encoded_segment(
    raw_vendor: RawVendor, kind: str
) -> None:
    """Each reserved character of a vendor id reaches the vendor percent-encoded, in one
    segment: never decoded back (`a;b`), split (`a/b`) or cut (`a?b`, `a#b`)."""
    base = raw_vendor.url + ("/v2" if kind == "partoo" else "")
    method, path = PATHS[kind]
    for vendor_id, segment in ENCODED.items():
        await deliver(adapter(kind, base), vendor_id)
        assert raw_vendor.lines[-1] == f"{method} {path}{segment} HTTP/1.1", vendor_id
    assert len(raw_vendor.lines) == len(ENCODED)


@pytest.mark.parametrize("kind", ["partoo", "plaspy"])
async def test_dot_segments_are_refused_before_sending(raw_vendor: RawVendor, kind: str) -> None:
    """`.` and `..` as a vendor id are a permanent `invalid_vendor_id`; nothing is sent."""
    for vendor_id in REFUSED:
        with pytest.raises(SchemaRefused) as caught:
            await deliver(adapter(kind, raw_vendor.url), vendor_id)
        assert caught.value.reason == "invalid_vendor_id"
    assert raw_vendor.lines == []


async def test_fleet_refuses_every_id_outside_its_pattern_before_sending(
    raw_vendor: RawVendor,
) -> None:
    """Fleet ids must match ^[1-9]\\d*$: the others are refused and never sent; a valid one
    arrives as itself."""
    fleet = adapter("fleet", raw_vendor.url + "/api")
    for vendor_id in (*ENCODED, *REFUSED, "42;x", "42/..", "042"):
        with pytest.raises(SchemaRefused) as caught:
            await deliver(fleet, vendor_id)
        assert caught.value.reason == "invalid_vendor_id"
    assert raw_vendor.lines == []
    await deliver(fleet, "42")
    assert raw_vendor.lines == ["PATCH /api/users/42 HTTP/1.1"]
