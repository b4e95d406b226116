"""Canonical changes -> MileApp's `PATCH /user`, and MileApp's answer -> an outcome.

MileApp's path carries no user id: the id travels in the body under `settings.id_field`
(`_id` by default). MileApp reports failure in the body (`status: false`), even on HTTP 200.
"""

from __future__ import annotations

from typing import Any, ClassVar

from config.vendors import VendorSettings
from core.event import NAME_PARTS
from workers.errors import VendorRefused
from workers.vendors.base import AdapterBase, ObjectBody, join_name, vendor_text, vendor_url
from workers.vendors.interface import ChangeSet, Translation, VendorResult
from workers.vendors.mileapp.schema import PatchUserAnswer, PatchUserBody

SIMPLE_FIELDS = {"email": "email", "phone": "phoneNumber"}
"""Canonical field -> MileApp body key, for the fields copied over one to one."""


class MileAppAdapter(AdapterBase[PatchUserAnswer]):
    """MileApp takes a name, an email and a phone number; it can clear none of them."""

    kind: ClassVar[str] = "mileapp"
    answer_model = PatchUserAnswer
    answer_doc = "MileApp's documented body (a JSON object with a boolean `status`)"
    body_model = PatchUserBody

    @classmethod
    def settings_problems(cls, name: str, settings: VendorSettings) -> list[str]:
        """Also: no role map (MileApp has no role), and an `id_field` that is not a body field."""
        problems = super().settings_problems(name, settings)
        if settings.roles:
            problems.append(f"vendors.{name}.roles: MileApp has no role field; remove this map")
        if settings.id_field in PatchUserBody.model_fields:
            problems.append(
                f"vendors.{name}.id_field: {settings.id_field!r} is one of MileApp's own body "
                "fields, so it cannot carry the user id"
            )
        return problems

    def translate(self, change: ChangeSet) -> Translation:
        """The PATCH for the fields MileApp has a home for; None when only the id would go."""
        draft = ObjectBody(self.body_model, f"vendor_fields.{self.name}")
        touched, name = join_name(change)
        parts = tuple(part for part in NAME_PARTS if part in change.changes)
        if touched and name is None:
            for part in parts:
                draft.omit(part, "not_clearable")
        elif touched:
            draft.put("name", name, *parts)
        for field, key in SIMPLE_FIELDS.items():
            if field not in change.changes:
                continue
            value = change.changes[field]
            if value is None:
                draft.omit(field, "not_clearable")
            else:
                draft.put(key, value.replace(" ", "") if field == "phone" else value, field)
        homed = {*NAME_PARTS, *SIMPLE_FIELDS}
        for field in change.changes:
            if field not in homed:
                draft.omit(field, "no_home")

        return draft.translation(
            change.vendor_fields,
            method="PATCH",
            url=vendor_url(self.settings.base, "user", vendor="MileApp"),
            auth={"Authorization": f"Bearer {self.settings.auth.token.get_secret_value()}"},
            carry={self.settings.id_field: change.vendor_user_id},
        )

    def vendor_message(self, payload: dict[str, Any]) -> str | None:
        """MileApp's `message`."""
        return vendor_text(payload.get("message"))

    def result(
        self, answer: PatchUserAnswer, payload: Any, status: int, message: str | None
    ) -> VendorResult:
        """Success only when the body says `status: true`; it carries MileApp's message."""
        if not answer.status:
            raise VendorRefused("vendor_refused", http_status=status, vendor_message=message)
        return VendorResult(message=message)
