"""Every registered kind's adapter against its own testing module: the standard change is the
documented call, the request shown to people hides the credential and any password, and each
field the vendor has no place for sends nothing. A new kind is covered without a line here."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.kinds import DEMO_USERS, FIXTURES, NAMES
from workers.vendors.interface import Omission, VendorAdapter, VendorRequest
from workers.vendors.registry import ADAPTER_KINDS

from .conftest import MakeChange, MakeSettings

PASSWORD = "Secret-Passw0rd!"
NO_HOME_CASES = [
    (kind, field, value)
    for kind in NAMES
    for field, value in sorted(FIXTURES[kind].no_home.items())
]


def adapter_of(kind: str, vendor_settings: MakeSettings) -> VendorAdapter:
    return ADAPTER_KINDS[kind](kind, vendor_settings(kind))


@pytest.mark.parametrize("kind", NAMES)
def test_standard_change_is_the_documented_call(
    kind: str, vendor_settings: MakeSettings, change_set: MakeChange
) -> None:
    """The standard change to the demo user is the kind's update call: its method, its URL
    under base_url, the credential as the vendor reads it, its JSON media type, and the
    expected body."""
    fixtures = FIXTURES[kind]
    change = change_set(dict(fixtures.standard_change), vendor_user_id=DEMO_USERS[kind])
    translation = adapter_of(kind, vendor_settings).translate(change)
    assert translation.request is not None
    request = translation.request
    assert request.method == fixtures.update_method
    assert request.url == fixtures.update_url(fixtures.example_base_url, DEMO_USERS[kind])
    assert request.headers == {
        **fixtures.auth_headers(),
        "Content-Type": fixtures.media_type,
        "Accept": fixtures.media_type,
    }
    assert request.body == fixtures.standard_body
    assert translation.omitted == ()


@pytest.mark.parametrize("kind", NAMES)
def test_masked_request_hides_credential_and_password(
    kind: str, vendor_settings: MakeSettings, change_set: MakeChange
) -> None:
    """The request shown to people (preview, dead letters) masks the credential header and
    holds neither the token nor a password, whether or not the vendor takes passwords."""
    fixtures = FIXTURES[kind]
    changes = {**fixtures.standard_change, "password": PASSWORD}
    translation = adapter_of(kind, vendor_settings).translate(
        change_set(changes, vendor_user_id=DEMO_USERS[kind])
    )
    assert translation.request is not None
    masked = translation.request.masked()
    assert masked["headers"][fixtures.auth_header] == "***"
    text = orjson.dumps(masked).decode()
    assert fixtures.token not in text
    assert PASSWORD not in text


@pytest.mark.parametrize(("kind", "field", "value"), NO_HOME_CASES)
def test_fields_with_no_home_send_nothing(
    kind: str, field: str, value: Any, vendor_settings: MakeSettings, change_set: MakeChange
) -> None:
    """A field the vendor has no place for produces no request and is listed as no_home."""
    translation = adapter_of(kind, vendor_settings).translate(
        change_set({field: value}, vendor_user_id=DEMO_USERS[kind])
    )
    assert translation.request is None
    assert translation.omitted == (Omission(field, "no_home"),)


def test_a_preview_shows_no_header_that_may_hold_a_credential() -> None:
    """Only the public headers are shown in clear: a kind sending its credential in a header of
    any other name (`X-Token`) needs no list of secret header names to have it masked."""
    request = VendorRequest(
        method="PATCH",
        url="http://127.0.0.1/users/1",
        headers={"X-Token": "tok-123", "Content-Type": "application/json", "Accept": "*/*"},
        body={},
    )
    assert request.masked()["headers"] == {
        "X-Token": "***",
        "Content-Type": "application/json",
        "Accept": "*/*",
    }
