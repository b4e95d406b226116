"""The routes of /scim/v2, declared once (`gateway.routing.Route`): registered by `gateway.app`
and described in `/openapi.json` with the SCIM media type, `application/scim+json`.

The document describes the User resource with a fixed model of the links extension (`links`:
an object of strings), since the model that validates is built per configuration with one
sub-attribute per configured vendor instance (`gateway.scim.service`); `/scim/v2/Schemas`
publishes that exact one.
"""

from __future__ import annotations

from typing import Any

from scim2_models import (
    EnterpriseUser,
    Error,
    Extension,
    ListResponse,
    PatchOp,
    ResourceType,
    ServiceProviderConfig,
    User,
)
from scim2_models import Schema as ScimSchema
from scim2_models.urn import URN

from core.scim_attributes import LINKS_SCHEMA
from gateway.routing import (
    JSON,
    Answer,
    Parameter,
    Route,
    Schema,
    Tag,
    path_parameter,
    query_parameter,
)
from gateway.scim import routes
from gateway.scim.errors import SCIM_JSON
from gateway.scim.routes import USERS
from gateway.scim.service import BASE_PATH, DEFAULT_COUNT, MAX_RESULTS


class UsersyncLinks(Extension):
    """usersync's links extension as documented: vendor instance -> the user's id there (the
    configured instances only; `/scim/v2/Schemas` lists them)."""

    __schema__ = URN(LINKS_SCHEMA)
    links: dict[str, str] | None = None


ScimUser = User[EnterpriseUser | UsersyncLinks]
SCIM_TAG = Tag(
    "scim",
    "SCIM 2.0 service provider (RFC 7643/7644) for identity providers: a source with "
    "`scim: true`, its bearer token",
)
_ID = path_parameter(
    "scim_id", "^[0-9a-f-]{36}$", "the user's `id`: the UUID usersync assigned at creation"
)
_ATTRIBUTES = (
    query_parameter(
        "attributes", {"type": "string"}, "comma-separated attributes to return (RFC 7644 §3.9)"
    ),
    query_parameter(
        "excludedAttributes", {"type": "string"}, "comma-separated attributes to leave out"
    ),
)
_USER_BODY = Schema(
    lambda ref, _settings: {"allOf": [ref(ScimUser), {"required": ["userName"]}]}, (ScimUser,)
)
"""The User resource as a request body: `userName` is required (RFC 7643 §4.1.1)."""
_BODY: dict[str, Any] = {SCIM_JSON: _USER_BODY, JSON: _USER_BODY}
_WRITE_ERRORS = (400, 401, 403, 404, 408, 409, 412, 413, 415, 429, 503)
_READ_ERRORS = (400, 401, 403, 404, 503)


def _route(
    method: str,
    path: str,
    handler: Any,
    operation_id: str,
    summary: str,
    answers: dict[int, Answer],
    errors: tuple[int, ...],
    body: dict[str, Any] | None = None,
    parameters: tuple[Parameter, ...] = (),
    description: str = "",
) -> Route:
    return Route(
        method,
        path,
        handler,
        operation_id,
        summary,
        SCIM_TAG,
        "source",
        answers,
        errors,
        body or {},
        parameters,
        description,
        error_model=Error,
        error_media_type=SCIM_JSON,
    )


def _scim(meaning: str, model: Any) -> Answer:
    return Answer(meaning, model, (SCIM_JSON,))


ROUTES: tuple[Route, ...] = (
    _route(
        "POST",
        USERS,
        routes.create_user,
        "scimCreateUser",
        "Create a user: stored per source and delivered as its first event",
        {201: _scim("created; `Location` and `ETag` headers", ScimUser)},
        (400, 401, 403, 408, 409, 413, 415, 429, 503),
        _BODY,
        _ATTRIBUTES,
        "409 `uniqueness`: another user of this source has the userName. The password is "
        "write-only (never answered) and sealed at rest.",
    ),
    _route(
        "GET",
        USERS,
        routes.list_users,
        "scimListUsers",
        "List or filter the source's users",
        {200: _scim("a page of users", ListResponse[ScimUser])},
        (400, 401, 403, 429, 503),
        parameters=(
            query_parameter("filter", {"type": "string"}, 'a SCIM filter: userName eq "ada"'),
            query_parameter("startIndex", {"type": "integer"}, "1-based index of the first result"),
            query_parameter(
                "count",
                {"type": "integer"},
                f"results per page (default {DEFAULT_COUNT}, at most {MAX_RESULTS})",
            ),
            *_ATTRIBUTES,
        ),
    ),
    _route(
        "GET",
        f"{USERS}/{{scim_id}}",
        routes.get_user,
        "scimGetUser",
        "One user",
        {200: _scim("the user; `ETag` its version", ScimUser)},
        _READ_ERRORS,
        parameters=(_ID, *_ATTRIBUTES),
    ),
    _route(
        "PUT",
        f"{USERS}/{{scim_id}}",
        routes.replace_user,
        "scimReplaceUser",
        "Replace a user (Okta's update)",
        {200: _scim("the user as stored", ScimUser)},
        _WRITE_ERRORS,
        _BODY,
        (_ID, *_ATTRIBUTES),
        "`If-Match` honoured (412 if it names another version).",
    ),
    _route(
        "PATCH",
        f"{USERS}/{{scim_id}}",
        routes.patch_user,
        "scimPatchUser",
        "Patch a user (add, replace, remove; ops in any case)",
        {200: _scim("the user as stored", ScimUser)},
        _WRITE_ERRORS,
        {SCIM_JSON: PatchOp[ScimUser], JSON: PatchOp[ScimUser]},
        (_ID, *_ATTRIBUTES),
        "`If-Match` honoured (412 if it names another version). `active: false` is a "
        "`user.deactivated` event.",
    ),
    _route(
        "DELETE",
        f"{USERS}/{{scim_id}}",
        routes.delete_user,
        "scimDeleteUser",
        "Delete a user: deactivated at every vendor (`user.deactivated`)",
        {204: Answer("deleted", None, (), {})},
        (401, 403, 404, 409, 412, 429, 503),
        parameters=(_ID,),
    ),
    _route(
        "POST",
        f"{BASE_PATH}/.search",
        routes.search_all,
        "scimSearchAll",
        "Search across resource types: not offered",
        {},
        (401, 403, 501, 503),
    ),
    _route(
        "GET",
        f"{BASE_PATH}/ServiceProviderConfig",
        routes.service_provider_config,
        "scimServiceProviderConfig",
        "What the service supports",
        {200: _scim("the configuration", ServiceProviderConfig)},
        (401, 403, 503),
    ),
    _route(
        "GET",
        f"{BASE_PATH}/ResourceTypes",
        routes.resource_types,
        "scimResourceTypes",
        "The resource types: User",
        {200: _scim("every resource type", ListResponse[ResourceType])},
        (401, 403, 503),
    ),
    _route(
        "GET",
        f"{BASE_PATH}/ResourceTypes/{{id}}",
        routes.resource_type,
        "scimResourceType",
        "One resource type",
        {200: _scim("the resource type", ResourceType)},
        (401, 403, 404, 503),
        parameters=(path_parameter("id", "^.+$", "the resource type's id: User"),),
    ),
    _route(
        "GET",
        f"{BASE_PATH}/Schemas",
        routes.list_schemas,
        "scimSchemas",
        "The schemas: User, the enterprise extension, usersync's links extension",
        {200: _scim("every schema", ListResponse[ScimSchema])},
        (401, 403, 503),
    ),
    _route(
        "GET",
        f"{BASE_PATH}/Schemas/{{id}}",
        routes.get_schema,
        "scimSchema",
        "One schema",
        {200: _scim("the schema", ScimSchema)},
        (401, 403, 404, 503),
        parameters=(path_parameter("id", "^.+$", "the schema's URN"),),
    ),
)
