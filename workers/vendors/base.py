"""What the vendor adapters share: settings checks, the role map, reading an answer, bodies.

An adapter is pure translation (`workers.vendors.interface`): it never performs I/O, so the
preview endpoint and the worker run exactly the same code, and adapters are tested without a
network. What the adapters do alike lives here: `AdapterBase` (settings checks, the role map,
reading an answer), `ObjectBody` (a JSON-object body built from changes, merged with
`vendor_fields`, checked and sent) and small functions. Each adapter keeps its field map, value
conversions, URL, method, auth header, success check and message reading.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import quote

import orjson
from pydantic import BaseModel, ValidationError

from config.vendors import VendorSettings
from workers.errors import RetryableDeliveryError, SchemaRefused, VendorRefused
from workers.vendors import fields_schema
from workers.vendors.interface import ChangeSet, Omission, Translation, VendorRequest, VendorResult

RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_MESSAGE = 500
"""The longest vendor message kept (logs, status answers, dead letters)."""
JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json", "Accept": "application/json"}
"""Sent by every adapter after its auth header: every vendor takes and answers JSON."""

AnswerT = TypeVar("AnswerT", bound=BaseModel)


def schema_problems(exc: ValidationError, where: str) -> list[tuple[str, str]]:
    """Each problem of a validation as (`<where>.<dotted path>`, message), without input
    values (they may be secrets) and without pydantic's `Value error, `."""
    return [
        (
            ".".join([where, *(str(part) for part in error["loc"])]),
            error["msg"].removeprefix("Value error, "),
        )
        for error in exc.errors(include_url=False, include_input=False)
    ]


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - current).total_seconds())


def decode_json(body: bytes) -> Any:
    """The body as JSON, or None when it is empty or not JSON (a garbage answer)."""
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def raise_for_http_status(
    status: int, headers: Mapping[str, str], vendor_message: str | None
) -> None:
    """The HTTP-level classification shared by all vendors; returns only for 2xx."""
    if 200 <= status < 300:
        return
    if status in RETRYABLE_STATUSES or status >= 500:
        raise RetryableDeliveryError(
            f"http_{status}",
            http_status=status,
            vendor_message=vendor_message,
            retry_after_s=parse_retry_after(headers.get("Retry-After")),
        )
    raise VendorRefused(f"http_{status}", http_status=status, vendor_message=vendor_message)


def join_name(change: ChangeSet) -> tuple[bool, str | None]:
    """The vendor's single `name` for vendors that have one (MileApp, Plaspy).

    Returns (touched, value): touched is False when no name part changed. `display_name` wins
    when it is known; else given and family names joined, taking parts the event did not
    change from the stored profile. None means every part is now cleared.
    """
    parts = ("given_name", "family_name", "display_name")
    if not any(part in change.changes for part in parts):
        return False, None
    known = {part: change.profile.get(part) for part in parts}
    known.update({part: change.changes[part] for part in parts if part in change.changes})
    if known["display_name"]:
        return True, known["display_name"]
    joined = " ".join(part for part in (known["given_name"], known["family_name"]) if part)
    return True, joined or None


def object_vendor_fields(
    fields: Mapping[str, Any] | Sequence[Mapping[str, Any]], where: str
) -> dict[str, Any]:
    """`vendor_fields` for a vendor whose body is an object: refuse an array (Plaspy's shape).

    Empty (none given) is `{}`."""
    if not fields:
        return {}
    if not isinstance(fields, Mapping):
        raise SchemaRefused(
            "invalid_vendor_fields", vendor_message=f"{where}: must be an object of body fields"
        )
    return dict(fields)


def validate_body(model: type[BaseModel], body: Any, reason: str, prefix: str = "") -> None:
    """Check `body` against the vendor's documented `model`; SchemaRefused(`reason`) otherwise,
    naming every problem's path after `prefix` (see `describe_errors`)."""
    try:
        model.model_validate(body)
    except ValidationError as exc:
        raise SchemaRefused(reason, vendor_message=describe_errors(exc, prefix)) from exc


def describe_errors(exc: ValidationError, prefix: str = "") -> str:
    """Each problem as `<prefix><dotted path>: message`, joined by `; `.

    Input values are left out (they may be secrets), and so is pydantic's `Value error, `."""
    return "; ".join(
        f"{prefix}{'.'.join(str(part) for part in error['loc'])}: "
        + error["msg"].removeprefix("Value error, ")
        for error in exc.errors(include_url=False, include_input=False)
    )


def sorted_omissions(omitted: Iterable[Omission]) -> tuple[Omission, ...]:
    """Omissions as a `Translation` carries them: one of each, sorted by field then reason."""
    return tuple(sorted(set(omitted), key=lambda o: (o.field, o.reason)))


def json_headers(auth: Mapping[str, str]) -> dict[str, str]:
    """A request's headers: the vendor's auth header(s), then `JSON_HEADERS`."""
    return {**auth, **JSON_HEADERS}


def vendor_url(base: str, *segments: str, vendor: str) -> str:
    """A vendor's URL: `base` (the configured base URL, already normalised) and each of
    `segments` as one path segment with every reserved character percent-encoded
    (`quote(segment, safe="")`: `a;b` is `a%3Bb`, `a%2Fb` is `a%252Fb`).

    The transport sends it exactly as built (`yarl.URL(url, encoded=True)`): nothing decodes
    a segment again, so a vendor never reads `a;b` as `a` with a parameter, nor `a/b` as two
    segments. `.` and `..` would be resolved away by the vendor's server even encoded, so a
    segment that is one is SchemaRefused("invalid_vendor_id")."""
    for segment in segments:
        if segment in {".", ".."}:
            raise SchemaRefused(
                "invalid_vendor_id", vendor_message=f"{segment!r} cannot be a {vendor} user id"
            )
    return base + "".join("/" + quote(segment, safe="") for segment in segments)


def vendor_text(value: Any) -> str | None:
    """A vendor's message as one bounded line: a string as is, anything else as JSON, cut at
    `MAX_MESSAGE` characters; None when it is absent or empty."""
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text[:MAX_MESSAGE]


class AdapterBase(ABC, Generic[AnswerT]):
    """What every adapter does alike: settings checks, the role map, reading the answer.

    A subclass sets `kind`, `answer_model` and `answer_doc`, `role_values` when its
    roles are a closed enum, and implements `translate` and `vendor_message`; it overrides
    `result` when a documented answer can still say the update failed. The engine never sees
    this class: it knows adapters as `VendorAdapter`.
    """

    kind: ClassVar[str]
    role_values: ClassVar[Sequence[str] | None] = None
    """The vendor's role values in its documented order; None when any value is accepted."""
    answer_model: type[AnswerT]
    """The vendor's documented 2xx answer."""
    answer_doc: ClassVar[str]
    """That answer in words (`<Vendor>'s documented body (<shape>)`), for error messages."""
    body_model: ClassVar[type[BaseModel]]
    """The vendor's documented request body, for a vendor whose body is a JSON object: its
    `vendor_fields` are checked against it (`vendor_fields_problems`, `ObjectBody`). A vendor
    of another shape overrides `vendor_fields_problems` instead."""

    def __init__(self, name: str, settings: VendorSettings) -> None:
        problems = self.settings_problems(name, settings)
        if problems:
            raise ValueError("; ".join(problems))
        self.name = name
        self.settings = settings

    def read_response(self, status: int, headers: Mapping[str, str], body: bytes) -> VendorResult:
        """Classify the status (`raise_for_http_status`), then read a 2xx as `answer_model`.

        A 2xx body of another shape is RetryableDeliveryError("invalid_response")."""
        payload = decode_json(body)
        message = self.vendor_message(payload) if isinstance(payload, dict) else None
        raise_for_http_status(status, headers, message)
        try:
            answer = self.answer_model.model_validate(payload)
        except ValidationError as exc:
            raise RetryableDeliveryError(
                "invalid_response",
                http_status=status,
                vendor_message=f"HTTP {status} without {self.answer_doc}",
            ) from exc
        return self.result(answer, payload, status, message)

    def vendor_fields_problems(self, fields: Any) -> list[tuple[str, str]]:
        """`vendor_fields` of an object-body vendor: an object that `body_model` takes (the
        check `ObjectBody.translation` makes before sending)."""
        where = f"vendor_fields.{self.name}"
        if not fields:
            return []
        if not isinstance(fields, Mapping):
            return [(where, "must be an object of body fields")]
        try:
            self.body_model.model_validate(dict(fields))
        except ValidationError as exc:
            return schema_problems(exc, where)
        return []

    @classmethod
    def vendor_fields_schema(cls) -> dict[str, Any] | None:
        """The JSON schema of what `vendor_fields_problems` takes (`/openapi.json` gives it
        for each instance): `body_model`'s, unless a kind checks them its own way, which
        must then describe it too (else None: any JSON is described)."""
        if cls.vendor_fields_problems is not AdapterBase.vendor_fields_problems:
            return None
        return fields_schema.object_body(cls.body_model)

    @abstractmethod
    def vendor_message(self, payload: dict[str, Any]) -> str | None:
        """The vendor's own words in a JSON-object answer (see `vendor_text`), or None."""

    def result(
        self, answer: AnswerT, payload: Any, status: int, message: str | None
    ) -> VendorResult:
        """The outcome of a documented 2xx answer: plain success unless a vendor overrides it."""
        return VendorResult()

    @classmethod
    def settings_problems(cls, name: str, settings: VendorSettings) -> list[str]:
        """Every problem with instance `name`'s settings, each led by its key path
        (`vendors.<name>.…`); `__init__` raises them as one ValueError. Extend to add checks."""
        problems = []
        if settings.kind != cls.kind:
            problems.append(f"vendors.{name}.kind: {settings.kind!r} is not {cls.kind!r}")
        if cls.role_values is not None:
            allowed = ", ".join(cls.role_values)
            problems.extend(
                f"vendors.{name}.roles.{role}: {value!r} is not one of {allowed}"
                for role, value in settings.roles.items()
                if value not in cls.role_values
            )
        return problems

    def map_role(self, role: str) -> str:
        """The vendor's value for a canonical role; SchemaRefused("unmapped_role") naming the
        instance's role map when it has no entry."""
        if role not in self.settings.roles:
            mapped = ", ".join(sorted(self.settings.roles)) or "none"
            raise SchemaRefused(
                "unmapped_role",
                vendor_message=f"role {role!r} has no mapping in vendors.{self.name}.roles "
                f"(mapped: {mapped})",
            )
        return self.settings.roles[role]


@dataclass
class ObjectBody:
    """A JSON-object request body (MileApp, Fleet, Partoo) built from canonical changes.

    `model` is the vendor's documented body; `where` (`vendor_fields.<instance>`) prefixes the
    paths of refused vendor fields. Each key remembers the canonical fields that produced it,
    so one that `vendor_fields` sets again is reported as their `vendor_fields_override`.
    """

    model: type[BaseModel]
    where: str
    body: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, tuple[str, ...]] = field(default_factory=dict)
    omitted: list[Omission] = field(default_factory=list)

    def put(self, key: str, value: Any, *sources: str) -> None:
        """Set body `key` to `value`, produced by the canonical fields `sources`."""
        self.body[key] = value
        self.origin[key] = sources

    def omit(self, source: str, reason: str) -> None:
        """Leave canonical field `source` out of the request, for `reason`."""
        self.omitted.append(Omission(source, reason))

    def translation(
        self,
        vendor_fields: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        method: str,
        url: str,
        auth: Mapping[str, str],
        carry: Mapping[str, Any] | None = None,
    ) -> Translation:
        """Merge `vendor_fields` (checked against `model`; they win over mapped keys), then
        the request: the `carry` keys (unchecked, e.g. an id) and the body, or None if empty.

        SchemaRefused: "invalid_vendor_fields", or "invalid_request" for a body `model` refuses.
        """
        extra = object_vendor_fields(vendor_fields, self.where)
        if extra:
            validate_body(self.model, extra, "invalid_vendor_fields", f"{self.where}.")
        for key, value in extra.items():
            for source in self.origin.pop(key, ()):
                self.omit(source, "vendor_fields_override")
            self.body[key] = value
        omitted = sorted_omissions(self.omitted)
        if not self.body:
            return Translation(request=None, omitted=omitted)
        validate_body(self.model, self.body, "invalid_request")
        body = {**(carry or {}), **self.body}
        request = VendorRequest(method=method, url=url, headers=json_headers(auth), body=body)
        return Translation(request=request, omitted=omitted)
