"""The document's `components.schemas`: every pydantic model a route refers to, described by
pydantic (`models_json_schema`, request models on their validation side, answers on their
serialization side), with the rules pydantic checks but does not write into the schema."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway.routing import Route, Schema

REF = "#/components/schemas/{model}"

Key = tuple[Any, JsonSchemaMode]
"""A model and the side it is on (pydantic's key of its `$ref`)."""


def _body_models(routes: Iterable[Route]) -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = []
    for route in routes:
        for schema in route.body.values():
            if isinstance(schema, Schema):
                models += schema.models
            elif isinstance(schema, tuple):
                models += schema
            else:
                models.append(schema)
    return models


def models_of(routes: Iterable[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every model the routes refer to, with the side it is on, each once."""
    routes = list(routes)
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for route in routes:
        wanted.append((route.error_model, "serialization"))
        wanted += [
            (answer.model, "serialization")
            for answer in route.answers.values()
            if answer.model is not None
        ]
    wanted += [(model, "validation") for model in _body_models(routes)]
    return list(dict.fromkeys(wanted))


def _closed_keys(schema: Any) -> None:
    """pydantic describes a dict with constrained keys (`dict[VendorInstance, ...]`) by
    `patternProperties` alone, which lets any other key through; it validates the keys, so
    other keys are refused: say so (`additionalProperties: false`)."""
    if isinstance(schema, dict):
        if "patternProperties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _closed_keys(value)
    elif isinstance(schema, list):
        for value in schema:
            _closed_keys(value)


def _plain_keys(schema: Any) -> Any:
    """The schema with every key a plain `str`: scim2-models names its extension properties by
    a `str` subclass (its URN type), which JSON encoders and validators refuse as a key."""
    if isinstance(schema, dict):
        return {str(key): _plain_keys(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_plain_keys(value) for value in schema]
    return schema


_BUILT: dict[tuple[int, ...], tuple[tuple[Route, ...], dict[Key, Any], dict[str, Any]]] = {}
"""pydantic's schemas of a list of routes (the same list gives the same schemas): a gateway
builds its document at start and again on each reload, and tests start many gateways."""


def component_schemas(routes: Iterable[Route]) -> tuple[dict[Key, Any], dict[str, Any]]:
    """(model and side -> its `$ref`, the schemas by name) for the routes' models; the
    schemas are the caller's to change."""
    listed = tuple(routes)
    key = tuple(id(route) for route in listed)
    if key not in _BUILT:  # the routes are kept with their schemas: their ids stay theirs
        refs, top = models_json_schema(models_of(listed), ref_template=REF)
        top = _plain_keys(top)
        _closed_keys(top)
        _BUILT[key] = (listed, dict(refs), top.get("$defs", {}))
    _, refs, schemas = _BUILT[key]
    return refs, copy.deepcopy(schemas)
