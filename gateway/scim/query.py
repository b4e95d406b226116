"""`GET /scim/v2/Users` with `filter`, `startIndex`, `count` (RFC 7644 §3.4.2), and the
`attributes` / `excludedAttributes` of any answer (§3.9), parsed and evaluated by scim2-models
(`SearchRequest`, `ScimFilter`: the whole filter grammar, every operator).

How a filter is run: one naming a `userName` (`userName eq "..."`, alone or in a top-level
`and`, as Entra ID and Okta send it) or an `id` with `eq` reads that one resource by key;
any other filter reads the source's resources in creation order, 500 a round trip, and keeps
those that match, so its cost grows with the number of users the source provisioned. Lists
are in creation order (sorting is not offered: `sort.supported` is false).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from scim2_models import (
    Context,
    ListResponse,
    ResponseParameters,
    SearchRequest,
)
from scim2_models.path import AttrPath, CompareOperator, Comparison, LogicalExpr, LogicalOperator

from core.scim_attributes import USER_SCHEMA
from gateway.scim.errors import ScimError
from gateway.scim.service import DEFAULT_COUNT, MAX_RESULTS, ScimService
from gateway.scim.store import SCAN_CHUNK, ResourceStore, StoredUser
from gateway.scim.writes import name_key

SEARCH_PARAMETERS = ("filter", "startIndex", "count", "attributes", "excludedAttributes")
"""The query parameters a list reads; others (Entra ID's `aadOptscim062020`) are ignored."""
RESPONSE_PARAMETERS = ("attributes", "excludedAttributes")


def response_parameters(
    service: ScimService, query: Mapping[str, str]
) -> ResponseParameters[Any] | None:
    """`attributes` / `excludedAttributes` of a single-resource answer (400 if unknown)."""
    given = {name: query[name] for name in RESPONSE_PARAMETERS if name in query}
    if not given:
        return None
    try:
        with service.provider:
            return ResponseParameters[service.user_model].model_validate(given)  # type: ignore[name-defined]
    except ValidationError as exc:
        raise ScimError.of_validation(exc) from None


def search_request(service: ScimService, query: Mapping[str, str]) -> SearchRequest[Any]:
    given = {name: query[name] for name in SEARCH_PARAMETERS if name in query}
    try:
        with service.provider:
            return SearchRequest[service.user_model].model_validate(  # type: ignore[name-defined]
                given, scim_ctx=Context.SEARCH_REQUEST
            )
    except ValidationError as exc:
        raise ScimError.of_validation(exc) from None


def _is_attribute(path: AttrPath, name: str) -> bool:
    return (
        path.attr.casefold() == name.casefold()
        and path.sub_attr is None
        and (path.uri is None or path.uri.casefold() == USER_SCHEMA.casefold())
    )


def _key_lookup(node: Any) -> tuple[str, str] | None:
    """(`userName` or `id`, the value) when the filter pins one resource by either."""
    terms = [node]
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        terms = list(node.terms)
    for term in terms:
        if not isinstance(term, Comparison) or term.op != CompareOperator.eq:
            continue
        if not isinstance(term.value, str):
            continue
        for name in ("userName", "id"):
            if _is_attribute(term.attr_path, name):
                return name, term.value
    return None


class Lister:
    """One list request's reads."""

    def __init__(self, service: ScimService, resources: ResourceStore, source: str) -> None:
        self.service = service
        self.resources = resources
        self.source = source

    def _models(self, stored: list[StoredUser]) -> list[Any]:
        with self.service.provider:
            return [
                self.service.user_model.model_validate(user.resource, scim_ctx=Context.DEFAULT)
                for user in stored
            ]

    async def _pinned(self, attribute: str, value: str) -> list[StoredUser]:
        resource_id = value
        if attribute == "userName":
            key = name_key(value)
            found = await self.resources.id_of_name(self.source, key) if key else None
            if found is None:
                return []
            resource_id = found
        user = await self.resources.get(self.source, resource_id)
        return [user] if user is not None else []

    async def run(self, search: SearchRequest[Any]) -> tuple[int, list[Any]]:
        """(totalResults, the page's resources as models)."""
        start = search.start_index_0 or 0
        count = min(DEFAULT_COUNT if search.count is None else search.count, MAX_RESULTS)
        if search.filter is None:
            total = await self.resources.count(self.source)
            if count == 0:
                return total, []
            ids = await self.resources.ids(self.source, start, start + count - 1)
            return total, self._models(await self.resources.many(self.source, ids))
        pinned = _key_lookup(search.filter.ast)
        if pinned is not None:
            candidates = self._models(await self._pinned(*pinned))
            matches = [user for user in candidates if search.filter.match(user)]
            return len(matches), matches[start : start + count]
        matches = []
        total = await self.resources.count(self.source)
        for offset in range(0, total, SCAN_CHUNK):
            ids = await self.resources.ids(self.source, offset, offset + SCAN_CHUNK - 1)
            for user in self._models(await self.resources.many(self.source, ids)):
                if search.filter.match(user):
                    matches.append(user)
        return len(matches), matches[start : start + count]

    def answer(self, search: SearchRequest[Any], total: int, page: list[Any]) -> dict[str, Any]:
        listed = ListResponse[self.service.user_model](  # type: ignore[name-defined]
            total_results=total,
            start_index=(search.start_index_0 or 0) + 1,
            items_per_page=len(page),
            resources=page,
        )
        with self.service.provider:
            return listed.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=search)
