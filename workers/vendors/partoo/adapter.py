"""Canonical changes -> Partoo's `POST /user/{user_id}` (patch semantics), and its answer.

Partoo authenticates with an `x-APIKey` header, documents no nullable field (a clear is left
out), checks passwords against a policy (checked here first, so a weak one is never sent), and
answers 4xx with an `errors` object that is flattened into one line for operators.
"""

from __future__ import annotations

from typing import Any, ClassVar

from workers.errors import SchemaRefused
from workers.vendors import fields_schema
from workers.vendors.base import (
    AdapterBase,
    ObjectBody,
    object_vendor_fields,
    vendor_text,
    vendor_url,
)
from workers.vendors.interface import ChangeSet, Translation
from workers.vendors.partoo.schema import (
    LANGS,
    ROLES,
    UpdateUserAnswer,
    UpdateUserBody,
    describe_password_problems,
    password_problems,
    password_schema,
)

FIELDS = {
    "email": "email",
    "given_name": "first_name",
    "family_name": "last_name",
    "role": "role",
    "active": "disabled",
    "password": "password",
    "language": "lang",
}
"""Canonical field -> Partoo body key (docs/contract.md §1). Anything else has no home in Partoo."""


class PartooAdapter(AdapterBase[UpdateUserAnswer]):
    """Partoo: one patch-like POST per user; roles are Partoo's five built-in ones.

    Success is a 2xx JSON object (`{"id", "status": "success"}`)."""

    kind: ClassVar[str] = "partoo"
    role_values = ROLES
    answer_model = UpdateUserAnswer
    answer_doc = (
        'Partoo\'s documented body (a JSON object such as {"id": ..., "status": "success"})'
    )
    body_model = UpdateUserBody

    def translate(self, change: ChangeSet) -> Translation:
        """The POST for the fields Partoo has a home for; None when there is none."""
        url = vendor_url(self.settings.base, "user", change.vendor_user_id, vendor="Partoo")
        where = f"vendor_fields.{self.name}"
        draft = ObjectBody(self.body_model, where)
        for field, value in change.changes.items():
            key = FIELDS.get(field)
            if key is None:
                draft.omit(field, "no_home")
            elif value is None:
                draft.omit(field, "not_clearable")
            elif (sent := self._value(field, value)) is None:
                draft.omit(field, "unsupported_language")
            else:
                draft.put(key, sent, field)
        password = object_vendor_fields(change.vendor_fields, where).get("password")
        if isinstance(password, str):  # the policy's refusal comes before the schema's
            _check_password(password, f"{where}.password: ")
        return draft.translation(
            change.vendor_fields,
            method="POST",
            url=url,
            auth={"x-APIKey": self.settings.auth.token.get_secret_value()},
        )

    @classmethod
    def vendor_fields_schema(cls) -> dict[str, Any] | None:
        """`body_model`'s, with the password policy its validator applies."""
        return fields_schema.object_body(cls.body_model, {"password": password_schema()})

    def vendor_message(self, payload: dict[str, Any]) -> str | None:
        """Partoo's `errors` object as one line, e.g. `password: too short`."""
        if payload.get("errors") is None:
            return _text(payload.get("message"))
        return _text("; ".join(_flatten(payload["errors"], ())))

    def _value(self, field: str, value: Any) -> Any:
        """A canonical value in Partoo's terms (role mapped, active inverted, policy checked);
        None for a language Partoo does not offer."""
        if field == "language":
            return partoo_lang(value)
        if field == "role":
            return self.map_role(value)
        if field == "active":
            return not value
        if field == "password":
            _check_password(value)
        return value


def _check_password(password: str, prefix: str = "") -> None:
    """SchemaRefused("password_policy") listing the rules `password` breaks, never echoing it."""
    if problems := password_problems(password):
        raise SchemaRefused(
            "password_policy", vendor_message=prefix + describe_password_problems(problems)
        )


def partoo_lang(tag: str) -> str | None:
    """A BCP 47 tag as Partoo's `lang`: the tag itself, else its primary subtag, else None."""
    lowered = tag.lower()
    if lowered in LANGS:
        return lowered
    primary = lowered.split("-", 1)[0]
    return primary if primary in LANGS else None


def _flatten(value: Any, path: tuple[str, ...]) -> list[str]:
    """Leaves of a nested error object as `dotted.path: message` lines."""
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            # A top-level `json` only says "in the request body": the keys inside say where.
            lines += _flatten(item, path if not path and key == "json" else (*path, str(key)))
        return lines
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        return [line for i, item in enumerate(value) for line in _flatten(item, (*path, str(i)))]
    text = ", ".join(str(item) for item in value) if isinstance(value, list) else str(value)
    return [f"{'.'.join(path)}: {text}" if path else text]


def _text(value: Any) -> str | None:
    """Partoo's message as one bounded line; a non-string value is shown as Python prints it."""
    return vendor_text(None if value is None else str(value))
