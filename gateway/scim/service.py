"""The SCIM 2.0 service usersync provides (RFC 7643/7644): its User resource and what the
discovery endpoints publish, all from `scim2-models`, built once per gateway from its settings.

The User resource is the core schema with the enterprise extension (Entra ID and Okta send its
attributes) and usersync's links extension, whose `links` attribute has one string
sub-attribute per configured vendor instance: `/Schemas` thus tells an identity provider's
administrator exactly which vendor ids it may carry, and any other is refused as an unknown
attribute. The policy takes what real identity providers send and the RFC leaves open: a PATCH
whose filtered path matches no entry creates it (Entra ID's
`emails[type eq "work"].value` on a user without one), a `remove` may select entries by its
value (Entra ID's group-style removes). Everything else is read strictly (unknown attributes
refused); ops are case-insensitive and `"False"` reads as false in scim2-models itself.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from scim2_models import (
    Attribute,
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    EnterpriseUser,
    ETag,
    Extension,
    Filter,
    Meta,
    Pagination,
    Patch,
    Resource,
    ResourceType,
    SchemaExtension,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)
from scim2_models import Schema as ScimSchema

from config.settings import Settings
from core.scim_attributes import LINKS_ATTRIBUTE, LINKS_SCHEMA

BASE_PATH = "/scim/v2"
"""Where the service is served: the SCIM base URL is `http(s)://host:port/scim/v2`."""
MAX_RESULTS = 200
"""Most resources one list answers (`count` above it is lowered to it): the
`filter.maxResults` the service provider config announces."""
DEFAULT_COUNT = 100
"""Resources a list answers when the request gives no `count`."""

POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.forbid,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)


def links_extension(vendors: Iterable[str]) -> type[Extension]:
    """usersync's links extension for these vendor instances (the configured ones)."""
    schema = ScimSchema(
        id=LINKS_SCHEMA,
        name="UsersyncLinks",
        description="The user's id at each vendor instance usersync delivers to (identity "
        "links); stored as links of the user, under the source's link authority",
        attributes=[
            Attribute(
                name=LINKS_ATTRIBUTE,
                type=Attribute.Type.complex,
                multi_valued=False,
                description="vendor instance -> the user's id there",
                sub_attributes=[
                    Attribute(
                        name=vendor,
                        type=Attribute.Type.string,
                        multi_valued=False,
                        case_exact=True,
                        description=f"the user's id at vendor instance {vendor}",
                    )
                    for vendor in vendors
                ],
            )
        ],
    )
    return Extension.from_schema(schema)


@dataclass(frozen=True)
class ScimService:
    """What one gateway serves under /scim/v2."""

    user_model: type[Resource[Any]]
    """`User[EnterpriseUser | Links]`: validates requests, applies PATCHes, matches filters."""
    provider: ScimProvider
    config: ServiceProviderConfig

    @property
    def resource_type(self) -> ResourceType:
        return self.provider.resource_types[0]


def service_for(settings: Settings) -> ScimService:
    """The service of these settings (built once per set of vendor instances, so a reload
    that changes them is served the new links schema)."""
    return build_service(tuple(settings.vendors))


@functools.cache
def build_service(vendors: tuple[str, ...]) -> ScimService:
    links = links_extension(vendors)
    user_model = User[EnterpriseUser | links]  # type: ignore[valid-type]
    resource_type = ResourceType.from_resource(User)
    resource_type.schema_extensions = [
        SchemaExtension(schema_=EnterpriseUser.__schema__, required=False),
        SchemaExtension(schema_=LINKS_SCHEMA, required=False),
    ]
    resource_type.meta = Meta(
        resource_type="ResourceType", location=f"{BASE_PATH}/ResourceTypes/User"
    )
    config = ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=True),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="the usersync source's bearer token (sources[].token), sent as "
                "Authorization: Bearer <token>",
                primary=True,
            )
        ],
        pagination=Pagination(
            cursor=False,
            index=True,
            default_pagination_method=Pagination.DefaultPaginationMethod.index,
            default_page_size=DEFAULT_COUNT,
            max_page_size=MAX_RESULTS,
        ),
        meta=Meta(
            resource_type="ServiceProviderConfig",
            location=f"{BASE_PATH}/ServiceProviderConfig",
        ),
    )
    provider = ScimProvider(
        models=[User, EnterpriseUser, links],
        resource_types=[resource_type],
        config=config,
        policy=POLICY,
    )
    return ScimService(user_model, provider, config)


def schemas(service: ScimService) -> list[ScimSchema]:
    """What `/Schemas` publishes: the User, enterprise and links schemas, located."""
    published = []
    for schema in service.provider.schemas:
        copy = schema.model_copy(deep=True)
        copy.meta = Meta(resource_type="Schema", location=f"{BASE_PATH}/Schemas/{schema.id}")
        published.append(copy)
    return published
