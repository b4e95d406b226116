"""Canonical changes -> Fleet's `PATCH /users/{user_id}`, and Fleet's answer -> an outcome.

Fleet takes a partial body where `null` clears a field, except `email` and `role` (not
nullable) and `password` (null leaves it unchanged): clearing those is left out, not sent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from workers.errors import SchemaRefused
from workers.vendors.base import AdapterBase, ObjectBody, vendor_text, vendor_url
from workers.vendors.fleet.schema import ROLES, USER_ID, GetUserResponse, PatchUserBody
from workers.vendors.interface import ChangeSet, Translation

FIELDS = {
    "email": "email",
    "given_name": "first_name",
    "family_name": "last_name",
    "phone": "phone",
    "phone_country": "phone_country",
    "language": "language",
    "job_title": "position",
    "start_date": "arrival_date",
    "end_date": "departure_date",
    "birth_date": "date_of_birth",
    "birth_city": "city_of_birth",
    "birth_country": "country_of_birth",
    "role": "role",
    "password": "password",
}
"""Canonical field -> Fleet body key (docs/contract.md §1). Anything else has no home in Fleet."""
NOT_CLEARABLE = frozenset({"email", "role", "password"})


class FleetAdapter(AdapterBase[GetUserResponse]):
    """Fleet: one partial PATCH per user, ids are positive integers, roles EMPLOYEE/ADMIN.

    Success is a 2xx carrying the updated user under `data`."""

    kind: ClassVar[str] = "fleet"
    role_values = ROLES
    answer_model = GetUserResponse
    answer_doc = "Fleet's documented body (a JSON object with the updated user under `data`)"
    body_model = PatchUserBody

    def translate(self, change: ChangeSet) -> Translation:
        """The PATCH for the fields Fleet has a home for; None when there is none."""
        if not USER_ID.fullmatch(change.vendor_user_id):
            raise SchemaRefused(
                "invalid_vendor_id",
                vendor_message=f"Fleet user ids are positive integers (^[1-9]\\d*$); "
                f"{change.vendor_user_id!r} is not one",
            )
        draft = ObjectBody(self.body_model, f"vendor_fields.{self.name}")
        for field, value in change.changes.items():
            key = FIELDS.get(field)
            if key is None:
                draft.omit(field, "no_home")
            elif value is None and field in NOT_CLEARABLE:
                draft.omit(field, "not_clearable")
            else:
                draft.put(key, self._value(field, value), field)
        return draft.translation(
            change.vendor_fields,
            method="PATCH",
            url=vendor_url(self.settings.base, "users", change.vendor_user_id, vendor="Fleet"),
            auth={"Authorization": f"Bearer {self.settings.auth.token.get_secret_value()}"},
        )

    def vendor_message(self, payload: dict[str, Any]) -> str | None:
        """Fleet's error text: `error.message`, `error`, `message` or `detail`, when present."""
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return vendor_text(error["message"])
        if isinstance(error, str) and error:
            return vendor_text(error)
        return vendor_text(payload.get("message")) or vendor_text(payload.get("detail"))

    def _value(self, field: str, value: Any) -> Any:
        """A canonical value in Fleet's terms; None (clear) stays None."""
        if value is None:
            return None
        if field == "role":
            return self.map_role(value)
        if field == "phone":
            return str(value).replace(" ", "")
        if isinstance(value, dt.date):
            return value.isoformat()
        return value
