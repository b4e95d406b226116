"""Canonical changes -> Plaspy's `PATCH /api/users/{userId}` (RFC 6902), and its answer.

Setting a field is an `add` (on an existing member RFC 6902 makes it a replace, so it holds
whether or not the user has the field); clearing one is a `remove`. Plaspy reports failure in
the body (`success: false`), even on HTTP 200, and counts API usage in every answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar

import jsonpatch
import jsonpointer
from pydantic import ValidationError

from core.event import NAME_PARTS
from workers.errors import SchemaRefused, VendorRefused
from workers.vendors.base import (
    AdapterBase,
    join_name,
    json_headers,
    sorted_omissions,
    vendor_text,
    vendor_url,
)
from workers.vendors.interface import ChangeSet, Omission, Translation, VendorRequest, VendorResult
from workers.vendors.plaspy.schema import PatchAnswer, PatchBody, patch_schema

PATHS = {
    "email": "/email",
    "job_title": "/description",
    "start_date": "/from",
    "end_date": "/expires",
    "country": "/country",
    "timezone": "/timeZone",
    "role": "/group",
    "active": "/disabled",
    "password": "/password",
}
"""Canonical field -> JSON Patch path (docs/contract.md §1); the name parts and tags are built apart."""
USAGE_KEYS = ("apiUsage", "apiDailyUsage")
NOT_A_PATCH = (
    "must be a list of JSON Patch operations (RFC 6902), "
    'e.g. [{"op": "add", "path": "/country", "value": "Colombia"}]'
)


class PlaspyAdapter(AdapterBase[PatchAnswer]):
    """Plaspy: one JSON Patch per user; the role map's values are free-form group names."""

    kind: ClassVar[str] = "plaspy"
    answer_model = PatchAnswer
    answer_doc = (
        "Plaspy's documented body (a JSON object whose `success`, if present, is a boolean)"
    )

    def translate(self, change: ChangeSet) -> Translation:
        """The patch for the fields Plaspy has a home for; None when it would be empty."""
        url = vendor_url(self.settings.base, "api", "users", change.vendor_user_id, vendor="Plaspy")
        mapped: list[dict[str, Any]] = []
        origin: dict[str, tuple[str, ...]] = {}
        omitted: list[Omission] = []

        touched, name = join_name(change)
        if touched:
            mapped.append(_op("/name", name))
            origin["/name"] = tuple(part for part in NAME_PARTS if part in change.changes)
        for field, value in change.changes.items():
            if field in NAME_PARTS:
                continue
            if field == "tags":
                for key in sorted(value or {}):
                    path = f"/tags/{jsonpointer.escape(key)}"
                    mapped.append(_op(path, value[key]))
                    origin[path] = (field,)
            elif field in PATHS:
                mapped.append(_op(PATHS[field], self._value(field, value)))
                origin[PATHS[field]] = (field,)
            else:
                omitted.append(Omission(field, "no_home"))

        extra = self._vendor_fields(change.vendor_fields)
        overridden = {op["path"] for op in extra}
        kept = []
        for op in sorted(mapped, key=lambda op: str(op["path"])):
            if any(_within(op["path"], path) for path in overridden):
                omitted.extend(Omission(f, "vendor_fields_override") for f in origin[op["path"]])
            else:
                kept.append(op)
        ops = kept + extra

        ordered = sorted_omissions(omitted)
        if not ops:
            return Translation(request=None, omitted=ordered)
        _validate(ops, "patch")
        request = VendorRequest(
            method="PATCH",
            url=url,
            headers=json_headers(
                {"Authorization": f"Bearer {self.settings.auth.token.get_secret_value()}"}
            ),
            body=ops,
        )
        return Translation(request=request, omitted=ordered)

    @classmethod
    def vendor_fields_schema(cls) -> dict[str, Any] | None:
        """What `vendor_fields_problems` takes: a patch (`patch_schema`), or nothing."""
        return {"anyOf": [patch_schema(), {"type": "object", "maxProperties": 0}]}

    def vendor_message(self, payload: dict[str, Any]) -> str | None:
        """Plaspy's `error`, else its `message`."""
        return vendor_text(payload.get("error")) or vendor_text(payload.get("message"))

    def result(
        self, answer: PatchAnswer, payload: Any, status: int, message: str | None
    ) -> VendorResult:
        """Success unless the body says `success: false`; usage counters are reported."""
        if answer.success is False:
            raise VendorRefused("vendor_refused", http_status=status, vendor_message=message)
        usage = {
            key: value
            for key in USAGE_KEYS
            if isinstance(value := payload.get(key), int) and not isinstance(value, bool)
        }
        return VendorResult(usage=usage)

    def _value(self, field: str, value: Any) -> Any:
        """A canonical value in Plaspy's terms; None (clear) stays None."""
        if value is None:
            return None
        if field == "role":
            return self.map_role(value)
        if field == "active":
            return not value
        if isinstance(value, dt.date):
            # The seed writes its validity dates as UTC midnights: 2024-01-01T00:00:00Z.
            return f"{value.isoformat()}T00:00:00Z"
        return value

    def vendor_fields_problems(self, fields: Any) -> list[tuple[str, str]]:
        """`vendor_fields` for Plaspy: a JSON Patch array on writable fields (`_vendor_fields`
        refuses exactly these), each problem at `vendor_fields.<instance>.<index>...`."""
        where = f"vendor_fields.{self.name}"
        if not fields:
            return []
        if not isinstance(fields, list | tuple):
            return [(where, NOT_A_PATCH)]
        ops = [dict(op) if isinstance(op, Mapping) else op for op in fields]
        try:
            _check(ops)
        except ValidationError as exc:
            return [(f"{where}.{path}", message) for path, message in _problems(exc)]
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            return [(where, str(exc))]
        return []

    def _vendor_fields(self, fields: Any) -> list[dict[str, Any]]:
        """The event's Plaspy-native operations: a JSON Patch array on writable fields."""
        if not fields:
            return []
        where = f"vendor_fields.{self.name}"
        if not isinstance(fields, list | tuple):
            raise SchemaRefused("invalid_vendor_fields", vendor_message=f"{where}: {NOT_A_PATCH}")
        ops = [dict(op) if isinstance(op, Mapping) else op for op in fields]
        _validate(ops, where, reason="invalid_vendor_fields")
        return ops


def _op(path: str, value: Any) -> dict[str, Any]:
    """Set (add) a field, or clear (remove) it when the value is None."""
    if value is None:
        return {"op": "remove", "path": path}
    return {"op": "add", "path": path, "value": value}


def _within(path: str, parent: str) -> bool:
    """Whether `path` is `parent` or lies beneath it."""
    return path == parent or path.startswith(parent + "/")


def _check(ops: list[Any]) -> None:
    """The shape of each operation (pydantic) and the patch as a whole (jsonpatch); raises
    ValidationError, JsonPatchException or JsonPointerException."""
    PatchBody.validate_python(ops)
    jsonpatch.JsonPatch(ops)


def _validate(ops: list[Any], where: str, reason: str = "invalid_request") -> None:
    """`_check`, refusals as SchemaRefused(`reason`) naming where."""
    try:
        _check(ops)
    except ValidationError as exc:
        raise SchemaRefused(reason, vendor_message=_describe(exc, where)) from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise SchemaRefused(reason, vendor_message=f"{where}: {exc}") from exc


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Each problem as (`<index>.<member>`, message), without input values (they may be
    secrets) and without the union's tag in the path (the message implies it)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        index, *rest = error["loc"] or ("?",)
        if rest and rest[0] in {"add", "replace", "test", "remove", "move", "copy"}:
            rest = rest[1:]
        if error["type"] == "union_tag_not_found":
            message = "the operation has no `op` member"
        elif error["type"] == "union_tag_invalid":
            message = "`op` must be one of add, remove, replace, move, copy, test"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append((".".join(str(part) for part in (index, *rest)), message))
    return problems


def _describe(exc: ValidationError, where: str) -> str:
    """Each problem as `where[i].member: message` (see `_problems`)."""
    lines = []
    for path, message in _problems(exc):
        index, _, rest = path.partition(".")
        lines.append(f"{where}[{index}]" + (f".{rest}" if rest else "") + f": {message}")
    return "; ".join(lines)
