"""`GET /openapi.json`: the OpenAPI 3.1 description of every route of the gateway.

The document is a walk over the routes the gateway registers (`gateway.routing.Route`, the
`ROUTES` list of each route module, assembled by `gateway.app`): each route's method, path,
parameters, request body (per media type) and answers. Schemas come from the pydantic models
that validate requests and describe answers (`gateway.openapi_schemas`); the rest (errors,
security) from `gateway.openapi_components`. `tests/test_openapi.py` checks the document
against the router and runs schemathesis against the live gateway with it.

The document is built once per application from its settings (the batch's `maxItems` is the
configured `gateway.batch_max_events`) and served without credentials: it holds no secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

import core
from config.settings import Settings
from core.event import Event
from gateway.context import SETTINGS
from gateway.openapi_components import (
    DESCRIPTION,
    ERROR_HEADERS,
    ERRORS,
    SECURITY,
    SECURITY_SCHEMES,
)
from gateway.openapi_event import narrow_event
from gateway.openapi_schemas import Key, component_schemas
from gateway.routing import (
    JSON,
    OPERATIONS_TAG,
    Answer,
    BodySchema,
    Route,
    Schema,
)

PATH = "/openapi.json"
DOCUMENT = web.AppKey("openapi_document", bytes)
KindSchemas = Mapping[str, Mapping[str, Any]]
"""Vendor kind -> the JSON schema of an event's `vendor_fields` for an instance of it."""
KIND_SCHEMAS: web.AppKey[KindSchemas] = web.AppKey("vendor_fields_schemas")
_DESCRIBED: web.AppKey[tuple[Route, ...]] = web.AppKey("openapi_routes")


class _Walk:
    """The routes' operations, their models' `$ref`s at hand."""

    def __init__(self, refs: Mapping[Key, Any], settings: Settings) -> None:
        self.refs = refs
        self.settings = settings

    def request_ref(self, model: type[BaseModel]) -> dict[str, Any]:
        return dict(self.refs[(model, "validation")])

    def body_schema(self, schema: BodySchema) -> dict[str, Any]:
        if isinstance(schema, Schema):
            return schema.build(self.request_ref, self.settings)
        if isinstance(schema, tuple):
            return {"oneOf": [self.request_ref(model) for model in schema]}
        return self.request_ref(schema)

    def answer(self, answer: Answer) -> dict[str, Any]:
        if answer.model is not None:
            schema: Any = self.refs[(answer.model, "serialization")]
        else:
            schema = dict(answer.schema or {})
        content = {media_type: {"schema": schema} for media_type in answer.media_types}
        return {"description": answer.meaning, "content": content}

    def operation(self, route: Route) -> dict[str, Any]:
        responses = {
            str(status): self.answer(answer) for status, answer in sorted(route.answers.items())
        }
        error_schema = self.refs[(route.error_model, "serialization")]
        for status in route.errors:
            error: dict[str, Any] = {
                "description": ERRORS[status],
                "content": {route.error_media_type: {"schema": error_schema}},
            }
            if status in ERROR_HEADERS:
                error["headers"] = ERROR_HEADERS[status]
            responses[str(status)] = error
        doc: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": [route.tag.name],
            "security": SECURITY[route.auth],
            "responses": responses,
        }
        if route.description:
            doc["description"] = route.description
        if route.parameters:
            doc["parameters"] = [p.describe(self.settings) for p in route.parameters]
        if route.body:
            content = {
                media_type: {"schema": self.body_schema(schema)}
                for media_type, schema in route.body.items()
            }
            doc["requestBody"] = {"required": True, "content": content}
        return doc


def build_document(
    settings: Settings,
    routes: Iterable[Route],
    kind_schemas: KindSchemas | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a gateway serving `routes` with `settings`, exact for
    them: what it describes is what that gateway accepts (`gateway.openapi_event`).
    `kind_schemas`: the `vendor_fields` schema of each vendor kind that gives one."""
    routes = list(routes)
    refs, schemas = component_schemas(routes)
    if (Event, "validation") in refs:
        kinds = kind_schemas or {}
        vendor_fields = {
            name: kinds[vendor.kind]
            for name, vendor in settings.vendors.items()
            if vendor.kind in kinds
        }
        narrow_event(schemas, settings, vendor_fields)
    walk = _Walk(refs, settings)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = walk.operation(route)
    tags = {route.tag.name: route.tag.description for route in routes}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "usersync gateway",
            "version": core.__version__,
            "description": DESCRIPTION,
        },
        "tags": [{"name": name, "description": text} for name, text in tags.items()],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type=JSON)


def publish(app: web.Application, routes: Iterable[Route]) -> None:
    """Build the document of `routes` now, from the app's settings (so a model that cannot
    be described fails at start, not at the first request), for `get_openapi` to serve;
    again with new settings (`gateway.app.apply_settings`)."""
    described = tuple(routes)
    app[_DESCRIBED] = described
    document = build_document(app[SETTINGS], described, app.get(KIND_SCHEMAS))
    # OPT_NON_STR_KEYS: scim2-models names its extension properties by a `str` subclass (URN)
    app[DOCUMENT] = orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)


def describe_vendor_fields(app: web.Application, kind_schemas: KindSchemas) -> None:
    """Describe each instance's `vendor_fields` by its kind's schema (the workers' rule,
    handed in by the composition root, `usersync.runtime`), from now on and across reloads."""
    app[KIND_SCHEMAS] = kind_schemas
    described: tuple[Route, ...] = app[_DESCRIBED]
    publish(app, described)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        PATH,
        get_openapi,
        "openapi",
        "This document",
        OPERATIONS_TAG,
        "none",
        {200: Answer("OpenAPI 3.1", schema={"type": "object"})},
    ),
)
