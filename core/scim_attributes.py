"""Canonical user fields <-> SCIM 2.0 User attributes (RFC 7643 §4.1): the one mapping table.

SCIM ingress (`gateway.scim`: an identity provider provisions into usersync) reads each
canonical field from a SCIM User resource with it; SCIM egress (a `kind: scim` vendor:
usersync provisions into a SCIM application) writes each canonical change as a PATCH
operation on the attribute it names: a single-valued one at its `patch_path`, a multi-valued
one whole, as one primary work entry (RFC 7644 answers `noTarget` to a filtered path that no
entry matches yet); a cleared field is a `remove`. Both sides read this table, so they cannot
disagree on where a field lives. Pure data: no SCIM library needed.

A multi-valued attribute (`emails`, `phoneNumbers`, `roles`) holds several entries; the one
that carries the canonical value is chosen by `select`:
- `primary_or_work`: the entry marked `primary`, else the one of `type` "work", else the only
  entry there is (the contract: `emails[primary or type eq "work"].value`);
- `primary`: the entry marked `primary`, else the only entry there is (`roles[primary].value`).
No entry chosen reads as "no value": the canonical field is cleared (`null`).

`userName` has no canonical field: it is the identity provider's login handle, kept in the
SCIM resource (unique per source, looked up by `filter=userName eq "..."`), never sent to a
vendor. `externalId` is the provider's own id for the user, kept likewise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LINKS_SCHEMA = "urn:usersync:params:scim:schemas:extension:links:2.0:User"
"""usersync's extension of the User resource: vendor ids (identity links)."""
LINKS_ATTRIBUTE = "links"
"""The links extension's one attribute: a complex value whose sub-attributes are the
configured vendor instances, each holding the user's id there
(`{"urn:usersync:...:links:2.0:User": {"links": {"fleet-eu": "42"}}}`)."""

Select = Literal["primary_or_work", "primary"]


@dataclass(frozen=True)
class ScimAttribute:
    """Where one canonical field lives in a SCIM User resource."""

    canonical: str
    """The canonical field (`core.event.Changes`)."""
    attribute: str
    """The top-level SCIM attribute, as spelt on the wire (`name`, `emails`, `title`)."""
    sub_attribute: str | None = None
    """For a complex attribute, the sub-attribute holding the value (`givenName`, `value`)."""
    select: Select | None = None
    """For a multi-valued attribute, which entry carries the value (see the module)."""
    fallbacks: tuple[str, ...] = ()
    """Other top-level attributes read, in order, when `attribute` has no value (`locale`
    for `preferredLanguage`). Egress writes `attribute` only."""

    @property
    def multi_valued(self) -> bool:
        return self.select is not None

    @property
    def patch_path(self) -> str:
        """The PATCH path that writes this field (RFC 7644 §3.5.2), e.g. `name.givenName`,
        `emails[type eq "work"].value`, `roles[primary eq true].value`."""
        if self.select == "primary_or_work":
            return f'{self.attribute}[type eq "work"].{self.sub_attribute}'
        if self.select == "primary":
            return f"{self.attribute}[primary eq true].{self.sub_attribute}"
        if self.sub_attribute is not None:
            return f"{self.attribute}.{self.sub_attribute}"
        return self.attribute


SCIM_ATTRIBUTES: tuple[ScimAttribute, ...] = (
    ScimAttribute("given_name", "name", "givenName"),
    ScimAttribute("family_name", "name", "familyName"),
    ScimAttribute("display_name", "displayName"),
    ScimAttribute("email", "emails", "value", "primary_or_work"),
    ScimAttribute("phone", "phoneNumbers", "value", "primary_or_work"),
    ScimAttribute("job_title", "title"),
    ScimAttribute("language", "preferredLanguage", fallbacks=("locale",)),
    ScimAttribute("timezone", "timezone"),
    ScimAttribute("active", "active"),
    ScimAttribute("password", "password"),
    ScimAttribute("role", "roles", "value", "primary"),
)
"""Every canonical field a SCIM User carries, in the order events list them. Canonical
fields not listed (phone_country, start/end/birth dates, country, tags) have no home in the
core or enterprise User schema and are never read from or written to SCIM."""

BY_CANONICAL: dict[str, ScimAttribute] = {row.canonical: row for row in SCIM_ATTRIBUTES}
WRITE_ONLY = frozenset({"password"})
"""Canonical fields whose SCIM attribute is write-only (`returned: never`): never answered."""
