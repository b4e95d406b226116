"""The SCIM operations in `/openapi.json`: each is served under the SCIM media type, and a
scripted walk through every one of them (success answers and the usual errors) gets the
answers the document describes, body validated against its schema."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import jsonschema_rs
import orjson

from gateway.scim import api as scim_api
from tests.scim.conftest import SCIM_JSON, USER_SCHEMA, Answer, Scim


class ScimWalk:
    """Calls /scim/v2 and checks each answer against the served document."""

    def __init__(self, scim: Scim, document: dict[str, Any]) -> None:
        self.scim = scim
        self.document = document
        self.seen: set[tuple[str, str, int]] = set()

    async def __call__(
        self, method: str, template: str, status: int, path: str | None = None, **kwargs: Any
    ) -> Answer:
        answer = await self.scim.call(method, (path or template).removeprefix("/scim/v2"), **kwargs)
        assert answer.status == status, (method, path or template, answer.body)
        responses = self.document["paths"][template][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {template} answered undocumented {status}"
        content = responses[str(status)].get("content", {})
        if answer.body is not None:
            assert answer.headers["Content-Type"].startswith(SCIM_JSON)
            schema = {**content[SCIM_JSON]["schema"], "components": self.document["components"]}
            jsonschema_rs.Draft202012Validator(schema).validate(answer.body)
        self.seen.add((method, template, status))
        return answer


async def test_scim_operations_answer_as_documented(scim: Scim) -> None:
    """Every SCIM operation is documented with application/scim+json bodies and answers, and
    answers as the document says (success and errors)."""
    async with scim.http.get(scim.url + "/openapi.json") as response:
        document = orjson.loads(await response.read())
    users, one = "/scim/v2/Users", "/scim/v2/Users/{scim_id}"
    post = document["paths"][users]["post"]
    assert set(post["requestBody"]["content"]) == {SCIM_JSON, "application/json"}
    assert set(post["responses"]["201"]["content"]) == {SCIM_JSON}
    assert set(post["responses"]["400"]["content"]) == {SCIM_JSON}
    walk = ScimWalk(scim, document)
    body = {"schemas": [USER_SCHEMA], "userName": "ada@example.com", "title": "Analyst"}
    created = await walk("POST", users, 201, body=body)
    await walk("POST", users, 409, body=body)
    await walk("POST", users, 400, raw=b"{")
    await walk("POST", users, 401, body=body, token="not-a-token-at-all-0000")
    user = f"/scim/v2/Users/{created.body['id']}"
    await walk("GET", users, 200)
    await walk("GET", users, 200, path=users + "?filter=" + quote('userName eq "ada@example.com"'))
    await walk("GET", users, 400, path=users + "?filter=" + quote("userName eq"))
    await walk("GET", one, 200, path=user)
    await walk("GET", one, 404, path="/scim/v2/Users/0b5f7f9e-0000-4000-8000-000000000000")
    await walk("PUT", one, 200, path=user, body={**body, "title": "Engineer"})
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "title", "value": "Lead"}],
    }
    await walk("PATCH", one, 200, path=user, body=patch)
    await walk("PATCH", one, 412, path=user, body=patch, headers={"If-Match": 'W/"1"'})
    await walk("POST", "/scim/v2/.search", 501)
    await walk("GET", "/scim/v2/ServiceProviderConfig", 200)
    await walk("GET", "/scim/v2/ResourceTypes", 200)
    await walk("GET", "/scim/v2/ResourceTypes/{id}", 200, path="/scim/v2/ResourceTypes/User")
    await walk("GET", "/scim/v2/ResourceTypes/{id}", 404, path="/scim/v2/ResourceTypes/Group")
    await walk("GET", "/scim/v2/Schemas", 200)
    schema = "/scim/v2/Schemas/" + USER_SCHEMA
    await walk("GET", "/scim/v2/Schemas/{id}", 200, path=schema)
    await walk("DELETE", one, 204, path=user)
    await walk("DELETE", one, 404, path=user)
    answered = {(method, template) for method, template, status in walk.seen if status < 300}
    declared = {(route.method, route.path) for route in scim_api.ROUTES}
    assert answered == declared - {("POST", "/scim/v2/.search")}
