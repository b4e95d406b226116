"""One declaration per route: what aiohttp registers and what `/openapi.json` describes.

Each route module (routes.py, batch.py, admin.py, dead_letter_api.py, openapi.py, and any new
one) holds a `ROUTES` list of `Route`s next to its handlers; `gateway.app` registers the lists
(`register`) and `gateway.openapi` walks the same lists to build the document, so a route
cannot be served undocumented nor documented unserved.

A request body maps each media type it is accepted as to its schema (`Route.body`), and each
answer names its media types (`Answer.media_types`), so a module may add a route taking
`application/scim+json`, or a second media type to an existing body, with its own lines only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from config.settings import Settings
from core.event import USER_ID_PATTERN
from gateway.answers import ErrorBody

JSON = "application/json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Auth = Literal["source", "admin", "source_or_admin", "none"]
"""Who may call: the security requirement the document states (the handler enforces it)."""

Ref = Callable[[type[BaseModel]], dict[str, Any]]
"""A model's `$ref` in the document (request side: the schema that validates it)."""


@dataclass(frozen=True)
class Schema:
    """A request schema that is not one model's: `build(ref, settings)` gives it, referring
    to `models` (each described once in `components.schemas`) through `ref`."""

    build: Callable[[Ref, Settings], dict[str, Any]]
    models: tuple[type[BaseModel], ...] = ()


BodySchema = type[BaseModel] | tuple[type[BaseModel], ...] | Schema
"""A model (its `$ref`), several (`oneOf` them), or a `Schema` built per configuration."""


@dataclass(frozen=True)
class Answer:
    """A success answer: what it means, and its body's model (JSON) or, for a body that is
    not one (the metrics text), the `schema` of each of its `media_types`."""

    meaning: str
    model: type[BaseModel] | None = None
    media_types: tuple[str, ...] = (JSON,)
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Parameter:
    """A path or query parameter; `schema` may depend on the configuration (a callable of
    the settings), e.g. the enum of the configured vendor instances. `style` (OpenAPI's
    style and explode) lets an object stand for several query parameters that go together,
    e.g. `("form", True)` with a `oneOf` of objects: exactly one of two parameters."""

    name: str
    where: Literal["path", "query"]
    schema: Mapping[str, Any] | Callable[[Settings], Mapping[str, Any]]
    description: str
    style: tuple[str, bool] | None = None
    required: bool = False
    """A path parameter is always required."""

    def describe(self, settings: Settings) -> dict[str, Any]:
        schema = self.schema(settings) if callable(self.schema) else self.schema
        doc = {
            "name": self.name,
            "in": self.where,
            "required": self.required or self.where == "path",
            "description": self.description,
            "schema": dict(schema),
        }
        if self.style is not None:
            doc["style"], doc["explode"] = self.style
        return doc


def path_parameter(name: str, pattern: str, description: str) -> Parameter:
    return Parameter(name, "path", {"type": "string", "pattern": pattern}, description)


def query_parameter(
    name: str, schema: Mapping[str, Any] | Callable[[Settings], Mapping[str, Any]], description: str
) -> Parameter:
    return Parameter(name, "query", schema, description)


@dataclass(frozen=True)
class Tag:
    name: str
    description: str


def configured_vendor(settings: Settings) -> dict[str, Any]:
    """A vendor instance of this gateway's configuration (only those are taken)."""
    return {"type": "string", "enum": list(settings.vendors)}


EVENTS_TAG = Tag("events", "sources post events and read their status")
OPERATIONS_TAG = Tag("operations", "health, readiness, metrics (no token)")
USER_ID = path_parameter("user_id", USER_ID_PATTERN, "the canonical user id")


@dataclass(frozen=True)
class Route:
    """One route: registered with aiohttp (`method`, `path`, `handler`) and described in the
    document (the rest). `errors` are the error statuses it can answer (meanings in
    `gateway.openapi_components.ERRORS`), each with `error_model` as `error_media_type`."""

    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: Tag
    auth: Auth
    answers: Mapping[int, Answer]
    errors: tuple[int, ...] = ()
    body: Mapping[str, BodySchema] = field(default_factory=dict)
    """Media type -> schema of the request body; empty: no body is read."""
    parameters: tuple[Parameter, ...] = ()
    description: str = ""
    error_model: type[BaseModel] = ErrorBody
    error_media_type: str = JSON


def register(app: web.Application, routes: Iterable[Route]) -> None:
    """Add each route to the app's router (a GET answers HEAD too, as aiohttp's `add_get`)."""
    for route in routes:
        if route.method == "GET":
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)
