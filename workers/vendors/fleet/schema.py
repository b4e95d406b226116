"""Fleet's documented shapes (seed 001): `PatchUserBody` and the `GetUserResponse` answer.

Every property is nullable (null clears) except `email` and `role`; `password` is nullable
but null leaves the password as it is.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from core.email_address import Email

ROLES = ("EMPLOYEE", "ADMIN")
USER_ID = re.compile(r"[1-9][0-9]*")
"""`^[1-9]\\d*$` from the seed, with ASCII digits only (Python's \\d also matches others)."""


class PatchUserBody(BaseModel):
    """`PatchUserBody`: every property optional, nothing else allowed."""

    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)

    email: Email | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    phone_country: str | None = None
    password: str | None = None
    language: str | None = None
    position: str | None = None
    arrival_date: str | None = None
    departure_date: str | None = None
    date_of_birth: str | None = None
    city_of_birth: str | None = None
    country_of_birth: str | None = None
    role: Literal["EMPLOYEE", "ADMIN"] | None = None

    @field_validator("email", "role")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("null is not accepted: Fleet cannot clear this field")
        return value


class UserData(BaseModel):
    """The part of the updated user we rely on: that Fleet returned one."""

    model_config = ConfigDict(extra="allow")

    id: int


class GetUserResponse(BaseModel):
    """The 200 answer: `{"data": {...the updated user...}}`."""

    model_config = ConfigDict(extra="allow")

    data: UserData
