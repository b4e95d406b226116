"""What the shared test tables need of one vendor kind: `KindFixtures`.

Each `workers/vendors/<kind>/testing.py` defines `FIXTURES = KindFixtures(...)`; the suites
under tests/ (adapter, simulator, end to end) read it for every registered kind, so a new
kind is tested by them without a line added under tests/. Test data only: production code
never imports these modules (`VendorKind.fixtures` names them by dotted path).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from workers.vendors.kind import VendorKind

STANDARD_CHANGE: Final[Mapping[str, Any]] = MappingProxyType({"email": "ada@example.com"})
"""The canonical change every kind's suite sends unless a kind gives its own."""
JSON: Final = "application/json"


def email_key(document: Any) -> Any:
    """The email of a stored user whose document keeps it under `email` (the default)."""
    return document["email"]


@dataclass(frozen=True)
class KindFixtures:
    """One kind's test data, as the shared tables use it.

    Credentials: `token`, accepted by the kind's simulator (it passes its `check_token`), which
    the adapter sends as header `auth_header` with value `auth_prefix + token`.

    Configuration: `example_base_url` is the `base_url` of the adapter unit tests (never
    called), `sandbox_path` the `base_url` path of the kind under the sandbox (`/fleet/api`),
    `settings` the further vendor settings a working instance needs (a role map, say).

    The update call: `update_method` and `update_path`, relative to the base URL with `{id}`
    for the vendor user id (`users/{id}`); for `standard_change` sent to the demo user, the
    adapter's body is `standard_body`.

    Answers: `success_answer` is the vendor's documented 2xx body, `wrong_shape` a 2xx JSON
    object without that shape (an invalid answer); `no_home` canonical fields with a value
    that this vendor has no place for (nothing is sent, each is reported `no_home`).

    Simulator: `simulator_body` is a valid, state-changing body for the demo user, changing
    `simulator_change` = (document key, its value before); `body_failure_status` the HTTP
    status of the vendor's body-level failure (200 where documented, else 400);
    `failure_message` reads the message out of the vendor's failure body and fails
    (AssertionError) if the body is not that shape; `stored_email` reads the email out of a
    user document as the control API shows it (`email_key`: its `email` key).

    Media type: `media_type` is what the adapter sends as `Content-Type` and `Accept`, and
    what the shared suites send to the simulator (`application/json` unless the vendor's
    protocol names another, as SCIM's `application/scim+json`).
    """

    token: str
    auth_header: str
    auth_prefix: str
    example_base_url: str
    sandbox_path: str
    update_method: str
    update_path: str
    standard_body: Any
    success_answer: Mapping[str, Any]
    wrong_shape: Mapping[str, Any]
    no_home: Mapping[str, Any]
    simulator_body: Any
    simulator_change: tuple[str, Any]
    body_failure_status: int
    failure_message: Callable[[Any], str]
    settings: Mapping[str, Any] = field(default_factory=dict)
    standard_change: Mapping[str, Any] = field(default_factory=lambda: STANDARD_CHANGE)
    media_type: str = JSON
    stored_email: Callable[[Any], Any] = email_key

    def auth_headers(self, token: str | None = None) -> dict[str, str]:
        """The credential header as the adapter sends it (with `token`, or the kind's own)."""
        return {self.auth_header: self.auth_prefix + (self.token if token is None else token)}

    def update_url(self, base_url: str, vendor_user_id: str) -> str:
        """The update call's URL under `base_url` (a trailing slash on it or not)."""
        return base_url.rstrip("/") + "/" + self.update_path.format(id=vendor_user_id)


def fixtures_of(kind: VendorKind) -> KindFixtures:
    """The `FIXTURES` of the kind's testing module, checked: a folder without them fails here,
    naming the module."""
    fixtures = getattr(importlib.import_module(kind.fixtures), "FIXTURES", None)
    if not isinstance(fixtures, KindFixtures):
        raise TypeError(f"{kind.fixtures}.FIXTURES must be a KindFixtures")
    return fixtures
