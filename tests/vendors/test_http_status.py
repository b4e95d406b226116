"""HTTP-level reading shared by every adapter: retryable statuses with Retry-After, permanent
4xx, and 2xx answers that are not the vendor's documented shape."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from typing import Any

import orjson
import pytest

from tests.kinds import FIXTURES
from workers.errors import RetryableDeliveryError, VendorRefused
from workers.vendors.interface import VendorAdapter
from workers.vendors.registry import ADAPTER_KINDS

from .conftest import MakeSettings

KINDS = sorted(ADAPTER_KINDS)
# Per kind, from its testing module: the documented 2xx answer, and one lacking its shape.
SUCCESS: dict[str, Any] = {kind: dict(FIXTURES[kind].success_answer) for kind in KINDS}
WRONG_SHAPE: dict[str, Any] = {kind: dict(FIXTURES[kind].wrong_shape) for kind in KINDS}


@pytest.fixture(params=KINDS)
def adapter(request: pytest.FixtureRequest, vendor_settings: MakeSettings) -> VendorAdapter:
    kind: str = request.param
    return ADAPTER_KINDS[kind](kind, vendor_settings(kind))


def test_documented_success_is_success(adapter: VendorAdapter) -> None:
    """Each vendor's documented 200 answer reads as success."""
    body = orjson.dumps(SUCCESS[adapter.kind])
    adapter.read_response(200, {}, body)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_retryable_statuses_with_retry_after_seconds(adapter: VendorAdapter, status: int) -> None:
    """408/425/429/5xx are retryable and carry the Retry-After delta in seconds."""
    with pytest.raises(RetryableDeliveryError) as caught:
        adapter.read_response(status, {"Retry-After": "7"}, b"")
    assert caught.value.reason == f"http_{status}"
    assert caught.value.http_status == status
    assert caught.value.retry_after_s == 7.0


def test_retry_after_as_http_date(adapter: VendorAdapter) -> None:
    """A Retry-After HTTP date becomes the seconds left until that date."""
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    with pytest.raises(RetryableDeliveryError) as caught:
        adapter.read_response(429, {"Retry-After": format_datetime(when, usegmt=True)}, b"")
    assert caught.value.retry_after_s is not None
    assert 100 <= caught.value.retry_after_s <= 121


def test_retryable_without_retry_after(adapter: VendorAdapter) -> None:
    """A 503 without Retry-After is retryable with no hint; an HTML body is no message."""
    with pytest.raises(RetryableDeliveryError) as caught:
        adapter.read_response(503, {}, b"<html>Service Unavailable</html>")
    assert caught.value.retry_after_s is None
    assert caught.value.vendor_message is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_are_permanent(adapter: VendorAdapter, status: int) -> None:
    """A 4xx other than 408/425/429 is a permanent refusal, even with an unreadable body."""
    with pytest.raises(VendorRefused) as caught:
        adapter.read_response(status, {}, b"not json")
    assert caught.value.reason == f"http_{status}"
    assert caught.value.http_status == status


@pytest.mark.parametrize("body", [b"", b"<html>ok</html>", b"[]", b"null", b'"ok"'])
def test_2xx_garbage_is_retryable(adapter: VendorAdapter, body: bytes) -> None:
    """A 2xx whose body is not a JSON object is an invalid answer: retried, not success."""
    with pytest.raises(RetryableDeliveryError) as caught:
        adapter.read_response(200, {}, body)
    assert caught.value.reason == "invalid_response"
    assert caught.value.http_status == 200


def test_2xx_without_documented_shape_is_retryable(adapter: VendorAdapter) -> None:
    """A 2xx JSON object lacking the vendor's documented shape is an invalid answer."""
    with pytest.raises(RetryableDeliveryError) as caught:
        adapter.read_response(200, {}, orjson.dumps(WRONG_SHAPE[adapter.kind]))
    assert caught.value.reason == "invalid_response"
