"""The handlers of /scim/v2: Users (create, read, replace, patch, delete, list) and the
discovery endpoints. Each: authenticate the source (its bearer token; the source must have
`scim: true`), read, one store call, answer `application/scim+json`.

Order of refusals of a write, as for `POST /v1/events`: credentials from the headers (401,
403), 415, 413, 503 `overloaded`, 408, the storage bound (503), the source's rate (429), then
the body (400 `invalidSyntax`, 400 with the SCIM library's scimType), the resource (404, 412,
409 `uniqueness`) and the event (400 `invalidValue`, 403 link authority, 409 link conflict).
Writes and lists take from the source's `rate_limit`; reads of one resource and discovery do
not.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import structlog
from aiohttp import web
from scim2_models import Context, ResourceType

from config.ingress import SourceSettings
from gateway.auth import Claim, check_headers, enforce_source_rate, verify_body
from gateway.body import parse_json_object, read_json_body
from gateway.context import SECRET_BOX, SETTINGS, SOURCE_RATES, STORE, VENDOR_FIELDS
from gateway.errors import ApiError
from gateway.ingest import log_link_changes
from gateway.scim.errors import ScimError, scim_response
from gateway.scim.query import Lister, response_parameters, search_request
from gateway.scim.service import BASE_PATH, ScimService, schemas, service_for
from gateway.scim.store import RESOURCES, Plan, ResourceStore, StoredUser
from gateway.scim.writes import Writer, canonical_user_id, etag, name_key
from gateway.storage import STORAGE

log = structlog.get_logger("usersync.gateway")

USERS = f"{BASE_PATH}/Users"
_RESOURCE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _claim(request: web.Request) -> Claim:
    """What the headers establish, before a byte of the body is read: a source's bearer
    token (or signature) of a source with `scim: true`; the admin token is refused."""
    claim = check_headers(request, request.app[SETTINGS], admin_allowed=True)
    source = claim.caller.source
    if source is None:
        raise ScimError(403, None, "the admin token cannot provision users; use the source's")
    if not source.scim:
        raise ScimError(403, None, f"source {source.name} is not enabled for SCIM (sources[].scim)")
    structlog.contextvars.bind_contextvars(source=source.name)
    return claim


async def _source(request: web.Request) -> SourceSettings:
    """The SCIM source of a request without a body."""
    return await _verified(request, _claim(request), b"")


async def _verified(request: web.Request, claim: Claim, raw: bytes) -> SourceSettings:
    caller = await verify_body(claim, request.app[SETTINGS], raw, request.app[STORE].redis)
    assert caller.source is not None
    return caller.source


async def _write_source(request: web.Request, *, with_body: bool) -> tuple[SourceSettings, Any]:
    """A write's source and parsed body, refused in the v1 order (see the module)."""
    settings = request.app[SETTINGS]
    claim = _claim(request)
    raw = await read_json_body(request, settings.gateway.max_body_bytes) if with_body else b""
    source = await _verified(request, claim, raw)
    request.app[STORAGE].check()
    await enforce_source_rate(request.app[SOURCE_RATES], source)
    if not with_body:
        return source, None
    try:
        return source, parse_json_object(raw)
    except ApiError as exc:
        raise ScimError(400, "invalidSyntax", exc.message) from None


def _resource_id(request: web.Request) -> str:
    resource_id = request.match_info["scim_id"]
    if not _RESOURCE_ID.fullmatch(resource_id):
        raise ScimError(404, None, f"no user {resource_id}")
    return resource_id


def _service(request: web.Request) -> ScimService:
    return service_for(request.app[SETTINGS])


def _resources(request: web.Request) -> ResourceStore:
    return request.app[RESOURCES]


def _writer(request: web.Request, source: SourceSettings) -> Writer:
    app = request.app
    return Writer(app[SETTINGS], source, _service(request), app[SECRET_BOX], app[VENDOR_FIELDS])


def _location(request: web.Request, resource_id: str) -> str:
    return f"{request.url.origin()}{USERS}/{resource_id}"


def _answer(
    request: web.Request,
    service: ScimService,
    stored: StoredUser,
    context: Context,
    status: int = 200,
) -> web.Response:
    """A resource answered: its meta located, password left out, `ETag` its version."""
    params = response_parameters(service, request.query)
    with service.provider:
        user = service.user_model.model_validate(stored.resource, scim_ctx=Context.DEFAULT)
        assert user.meta is not None
        user.meta.location = _location(request, stored.id)
        body = user.model_dump(scim_ctx=context, response_parameters=params)
    headers = {"ETag": etag(stored.version)}
    if status == 201:
        headers["Location"] = user.meta.location
    return scim_response(body, status, headers)


def _log_write(action: str, source: str, plan: Plan, resource_id: str) -> None:
    log.info(
        "scim_write",
        action=action,
        source=source,
        resource_id=resource_id,
        version=plan.version,
        event_id=plan.record.event_id if plan.record else None,
        targets=list(plan.record.targets) if plan.record else [],
    )


def _user_names(body: Any) -> list[str]:
    """The `userName` keys a replace or patch body may give the user (watched by its write):
    a PUT's `userName`, a PATCH's `userName` path or path-less value."""
    if not isinstance(body, dict):
        return []
    names = [body.get("userName")]
    operations = body.get("Operations")
    for operation in operations if isinstance(operations, list) else []:
        if not isinstance(operation, dict):
            continue
        value, path = operation.get("value"), operation.get("path")
        if isinstance(path, str) and path.lower() == "username":
            names.append(value)
        elif path is None and isinstance(value, dict):
            names += [item for key, item in value.items() if str(key).lower() == "username"]
    return [key for name in names if (key := name_key(name))]


# -- Users -------------------------------------------------------------------------------------


async def create_user(request: web.Request) -> web.Response:
    source, body = await _write_source(request, with_body=True)
    writer = _writer(request, source)
    resource_id = str(uuid.uuid4())
    planned = writer.create(body, resource_id)

    async def plan(current: StoredUser | None, links: Any) -> Plan:
        return planned

    wanted = [planned.name_key] if planned.name_key else []
    canonical = canonical_user_id(source.name, resource_id)
    decided, ingested = await _resources(request).write(
        source.name, resource_id, canonical, wanted, plan
    )
    if decided.record is not None and ingested is not None:
        log_link_changes(decided.record, ingested)
    _log_write("create", source.name, decided, resource_id)
    stored = StoredUser(resource_id, decided.version, decided.resource or {}, decided.name_key)
    return _answer(request, writer.service, stored, Context.RESOURCE_CREATION_RESPONSE, 201)


async def _update(request: web.Request, action: str) -> web.Response:
    """PUT, PATCH and DELETE of one user: planned from the stored resource, in one
    transaction (`ResourceStore.write`)."""
    source, body = await _write_source(request, with_body=action != "delete")
    resource_id = _resource_id(request)
    writer = _writer(request, source)
    if_match = request.headers.get("If-Match")
    wanted = _user_names(body)

    async def plan(current: StoredUser | None, links: Any) -> Plan:
        if current is None:
            raise ScimError(404, None, f"no user {resource_id}")
        if action == "replace":
            return writer.replace(body, current, links, if_match)
        if action == "patch":
            return writer.patch(body, current, links, if_match)
        return writer.delete(current, links, if_match)

    canonical = canonical_user_id(source.name, resource_id)
    decided, ingested = await _resources(request).write(
        source.name, resource_id, canonical, wanted, plan
    )
    if decided.record is not None and ingested is not None:
        log_link_changes(decided.record, ingested)
    _log_write(action, source.name, decided, resource_id)
    if decided.resource is None:
        return web.Response(status=204)
    stored = StoredUser(resource_id, decided.version, decided.resource, decided.name_key)
    context = (
        Context.RESOURCE_REPLACEMENT_RESPONSE
        if action == "replace"
        else Context.RESOURCE_PATCH_RESPONSE
    )
    return _answer(request, writer.service, stored, context)


async def replace_user(request: web.Request) -> web.Response:
    return await _update(request, "replace")


async def patch_user(request: web.Request) -> web.Response:
    return await _update(request, "patch")


async def delete_user(request: web.Request) -> web.Response:
    return await _update(request, "delete")


async def get_user(request: web.Request) -> web.Response:
    source = await _source(request)
    resource_id = _resource_id(request)
    stored = await _resources(request).get(source.name, resource_id)
    if stored is None:
        raise ScimError(404, None, f"no user {resource_id}")
    return _answer(request, _service(request), stored, Context.RESOURCE_QUERY_RESPONSE)


async def list_users(request: web.Request) -> web.Response:
    source = await _source(request)
    await enforce_source_rate(request.app[SOURCE_RATES], source)
    service = _service(request)
    search = search_request(service, request.query)
    lister = Lister(service, _resources(request), source.name)
    total, page = await lister.run(search)
    for user in page:
        user.meta.location = _location(request, user.id)
    return scim_response(lister.answer(search, total, page))


async def search_all(request: web.Request) -> web.Response:
    """`POST /.search` across resource types (RFC 7644 §3.4.3) is not offered: 501."""
    await _source(request)
    raise ScimError(501, None, "searching several resource types at once is not supported")


# -- discovery ---------------------------------------------------------------------------------


async def service_provider_config(request: web.Request) -> web.Response:
    await _source(request)
    return scim_response(
        _service(request).config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    )


def _listed(resources: list[Any]) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(resources),
        "startIndex": 1,
        "itemsPerPage": len(resources),
        "Resources": [
            resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE) for resource in resources
        ],
    }


async def resource_types(request: web.Request) -> web.Response:
    await _source(request)
    return scim_response(_listed([_service(request).resource_type]))


async def resource_type(request: web.Request) -> web.Response:
    await _source(request)
    found: ResourceType = _service(request).resource_type
    if request.match_info["id"] != found.id:
        raise ScimError(404, None, f"no resource type {request.match_info['id']}")
    return scim_response(found.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


async def list_schemas(request: web.Request) -> web.Response:
    await _source(request)
    return scim_response(_listed(schemas(_service(request))))


async def get_schema(request: web.Request) -> web.Response:
    await _source(request)
    for schema in schemas(_service(request)):
        if schema.id == request.match_info["id"]:
            return scim_response(schema.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    raise ScimError(404, None, f"no schema {request.match_info['id']}")
