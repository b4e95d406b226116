"""Create, replace, patch and delete of a SCIM User, each planned from what is stored
(`gateway.scim.store`) and turned into the canonical event of its source.

Identity: the canonical user of a SCIM resource is `scim:<source>:<id>`, `id` being the
resource id usersync assigned (a UUID). It never changes (a `userName` or `externalId` may),
and it is the source's own: two identity providers (two sources) provisioning the same person
make two canonical users, and no SCIM source can name, and so change, a user another source
provisioned. The event of a write is `scim:<id>:<version>` (the resource's new version), with
`user.version` that version: a write retried after a lost answer changes nothing, so it is
neither stored again nor delivered twice.

The event goes through the v1 path's own code (`gateway.ingest`): validation against the
canonical schema (422 -> SCIM 400 `invalidValue` naming the SCIM attribute), `vendor_fields`
checks, targets and link authority (`allowed_targets`, `link_mode`), sealing of the password,
then the ingest script. Vendor ids of the links extension are the event's `user.external_ids`
when they change; a change of links alone becomes an event to the newly linked instances
carrying the user's current mapped values (the password aside), so the new vendor account is
brought up to date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError
from scim2_models import Context, Meta, PatchOp, Path, Resource, User

from config.ingress import SourceSettings
from config.settings import Settings
from core.ports import VendorFieldsCheck
from core.scim_attributes import LINKS_ATTRIBUTE, LINKS_SCHEMA
from core.secrets import PREFIX, SecretBox, SecretsNotConfigured, is_encrypted
from core.store import IngestRecord
from gateway.errors import ApiError
from gateway.ingest import build_record, check_link_conflicts, validated_event
from gateway.scim.errors import ScimError, of_api_error
from gateway.scim.mapping import (
    canonical_values,
    changed_fields,
    event_type,
    links_of,
    password_changed,
    scim_attribute_of,
    unmappable,
)
from gateway.scim.service import POLICY, ScimService
from gateway.scim.store import Plan, StoredUser

log = structlog.get_logger("usersync.gateway")

_USER_NAME = Path[User[Any]]("userName").resolve()


def canonical_user_id(source: str, resource_id: str) -> str:
    return f"scim:{source}:{resource_id}"


def event_id(resource_id: str, version: int) -> str:
    return f"scim:{resource_id}:{version}"


def etag(version: int) -> str:
    """`meta.version` and the `ETag` header: weak, the version's number."""
    return f'W/"{version}"'


def name_key(user_name: Any) -> str | None:
    """The comparison form of a `userName` (NFC, lower case: it is not case-exact)."""
    if not isinstance(user_name, str):
        return None
    return POLICY.comparison_key(_USER_NAME, user_name)


def check_if_match(header: str | None, current: StoredUser) -> None:
    """412 unless `If-Match` is absent, `*`, or names the current version (weakly compared)."""
    if header is None:
        return
    wanted = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    if "*" in wanted or etag(current.version).removeprefix("W/") in wanted:
        return
    raise ScimError(
        412,
        None,
        f"If-Match {header} does not match the resource's version {etag(current.version)}",
    )


def _now() -> dt.datetime:
    """UTC, to the millisecond (as usersync writes every time)."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Writer:
    """One request's writes: its source, the gateway's settings and service."""

    settings: Settings
    source: SourceSettings
    service: ScimService
    box: SecretBox
    check_fields: VendorFieldsCheck

    @property
    def model(self) -> type[Resource[Any]]:
        return self.service.user_model

    def validate(self, payload: Any, context: Context) -> Resource[Any]:
        try:
            with self.service.provider:
                return self.model.model_validate(payload, scim_ctx=context)
        except ValidationError as exc:
            raise ScimError.of_validation(exc) from None

    def load(self, stored: StoredUser) -> Resource[Any]:
        """A stored resource as the model (password still sealed)."""
        with self.service.provider:
            return self.model.model_validate(stored.resource, scim_ctx=Context.DEFAULT)

    def dump(self, user: Resource[Any]) -> dict[str, Any]:
        with self.service.provider:
            return user.model_dump(scim_ctx=Context.DEFAULT)

    # -- the four writes ---------------------------------------------------------------------

    def create(self, payload: Any, resource_id: str) -> Plan:
        user = self.validate(payload, Context.RESOURCE_CREATION_REQUEST)
        now = _now()
        user.id = resource_id
        user.meta = Meta(resource_type="User", created=now, last_modified=now, version=etag(1))
        return self._plan(None, self.dump(user), 1, {})

    def replace(
        self, payload: Any, current: StoredUser, links: Mapping[str, str], if_match: str | None
    ) -> Plan:
        check_if_match(if_match, current)
        new = self.validate(payload, Context.RESOURCE_REPLACEMENT_REQUEST)
        with self.service.provider:
            new.replace(self.load(current))  # read-only kept, immutable checked, password kept
        return self._changed(current, new, links)

    def patch(
        self, payload: Any, current: StoredUser, links: Mapping[str, str], if_match: str | None
    ) -> Plan:
        check_if_match(if_match, current)
        try:
            with self.service.provider:
                operation = PatchOp[self.model].model_validate(  # type: ignore[name-defined]
                    payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST
                )
        except ValidationError as exc:
            raise ScimError.of_validation(exc) from None
        user = self.load(current)
        try:
            with self.service.provider:
                operation.patch(user)
        except ValidationError as exc:
            raise ScimError.of_validation(exc) from None
        return self._changed(current, user, links)

    def delete(self, current: StoredUser, links: Mapping[str, str], if_match: str | None) -> Plan:
        """A deleted user is deactivated at every vendor (`user.deactivated`, the contract (docs/contract.md §7, SCIM))."""
        check_if_match(if_match, current)
        version = current.version + 1
        body = self._event_body(current.id, version, {"active": False}, {}, None)
        return Plan(None, version, self._record(body, links))

    # -- planning ------------------------------------------------------------------------------

    def _changed(self, current: StoredUser, user: Resource[Any], links: Mapping[str, str]) -> Plan:
        """The plan of a replace or patch: a new version only if the resource changed (a
        password set to the value it had is no change)."""
        stored_password = current.resource.get("password")
        password = getattr(user, "password", None)
        if password is not None and not password_changed(password, stored_password, self.box):
            user.password = stored_password  # type: ignore[attr-defined]
        if _content(self.dump(user)) == _content(current.resource):
            return Plan(current.resource, current.version, None, current.name_key)
        version = current.version + 1
        assert user.meta is not None
        user.meta.last_modified = _now()
        user.meta.version = etag(version)
        return self._plan(current, self.dump(user), version, links)

    def _plan(
        self,
        current: StoredUser | None,
        new: dict[str, Any],
        version: int,
        links: Mapping[str, str],
    ) -> Plan:
        resource_id = str(new["id"])
        old = current.resource if current is not None else None
        stored_password = old.get("password") if old is not None else None
        password = new.get("password")
        if is_encrypted(password) and password != stored_password:
            raise ScimError(
                400,
                "invalidValue",
                f"password must not start with {PREFIX} (usersync's ciphertext)",
            )
        changes = changed_fields(old, new, self.box)
        new_links = links_of(new)
        old_links = links_of(old or {})
        moved = {vendor: id_ for vendor, id_ in new_links.items() if old_links.get(vendor) != id_}
        targets = None
        if not changes and moved:
            changes = {k: v for k, v in canonical_values(new).items() if k != "password"}
            enabled = set(self.settings.enabled_vendors)
            targets = [vendor for vendor in moved if vendor in enabled] or None
        for field, why in unmappable(changes).items():
            log.warning(
                "scim_value_unmapped",
                source=self.source.name,
                resource_id=resource_id,
                attribute=scim_attribute_of(field),
                reason=why,
            )
            del changes[field]
        record = None
        if changes:
            body = self._event_body(
                resource_id, version, changes, moved, targets, current is not None
            )
            record = self._record(body, links)
        return Plan(
            self._sealed(new, stored_password), version, record, name_key(new.get("userName"))
        )

    def _event_body(
        self,
        resource_id: str,
        version: int,
        changes: Mapping[str, Any],
        external_ids: Mapping[str, str],
        targets: list[str] | None,
        existed: bool = True,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "event_id": event_id(resource_id, version),
            "type": event_type(changes, existed),
            "occurred_at": _now().isoformat().replace("+00:00", "Z"),
            "source": self.source.name,
            "user": {
                "id": canonical_user_id(self.source.name, resource_id),
                "version": version,
                "external_ids": dict(external_ids),
            },
            "changes": dict(changes),
        }
        if targets:
            body["targets"] = targets
        return body

    def _record(self, body: dict[str, Any], links: Mapping[str, str]) -> IngestRecord:
        """The event as `POST /v1/events` would store it, or the refusal it would answer."""
        try:
            event, targets = validated_event(body, self.settings, self.source, self.check_fields)
            check_link_conflicts(event, self.source, links)
            return build_record(event, targets, self.source, self.box)
        except ApiError as exc:
            if isinstance(exc.details, list):
                exc.details = [
                    {**item, "path": _scim_path(str(item.get("path", "")))}
                    for item in exc.details
                    if isinstance(item, dict)
                ]
            raise of_api_error(exc) from None

    def _sealed(self, resource: dict[str, Any], stored_password: Any) -> dict[str, Any]:
        """The resource as stored: a new password sealed (`core.secrets`)."""
        password = resource.get("password")
        if password is None or is_encrypted(password):
            return resource
        try:
            return {**resource, "password": self.box.encrypt(password)}
        except SecretsNotConfigured:
            raise ScimError(
                400,
                "invalidValue",
                "this gateway has no secrets.keys to encrypt the password with; it is refused "
                "rather than stored in clear",
            ) from None


def _content(resource: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if key != "meta"}


def _scim_path(canonical: str) -> str:
    if canonical.startswith("user.external_ids."):
        vendor = canonical.removeprefix("user.external_ids.")
        return f"{LINKS_SCHEMA}:{LINKS_ATTRIBUTE}.{vendor}"
    return scim_attribute_of(canonical)
