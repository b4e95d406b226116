"""MileApp's documented shapes (seed 000): the `patchUserRequest` body and the answers.

MileApp documents no nullable field, so an explicit `null` is refused here: the adapter leaves a
cleared field out instead of sending something MileApp would reject or misread.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, field_validator


class PatchUserBody(BaseModel):
    """`patchUserRequest`: every property optional, none nullable, nothing else allowed."""

    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)

    name: str | None = None
    email: str | None = None
    phoneNumber: str | None = None

    @field_validator("*")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("null is not accepted: MileApp cannot clear this field")
        return value


class PatchUserAnswer(BaseModel):
    """`patchusersuccess` / `patchuserfailed`: `status` says whether the update happened.

    `message` is a string in the examples but typed `object` for success, so it is kept as is.
    """

    model_config = ConfigDict(extra="allow")

    status: StrictBool
    message: Any = None
