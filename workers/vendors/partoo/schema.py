"""Partoo's documented shapes (seed 003): the update-user body and its `Password` policy.

Partoo documents no nullable field, so an explicit `null` is refused here: the adapter leaves a
cleared field out instead of sending it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

from core.email_address import Email
from workers.vendors.fields_schema import char_class

Role = Literal["ORG_ADMIN", "ORG_MANAGER", "GROUP_MANAGER", "BUSINESS_MANAGER", "PUBLISHER"]
Lang = Literal[
    "fr", "en", "es", "it", "pt-br", "de", "ar", "nl", "pl", "cs", "ca", "sk", "pt", "lv", "ro",
    "bg", "hu",
]  # fmt: skip
ROLES: tuple[str, ...] = get_args(Role)
LANGS: frozenset[str] = frozenset(get_args(Lang))
MIN_PASSWORD = 8


def password_problems(password: str) -> list[str]:
    """The rules of Partoo's `Password` that `password` breaks (never the password itself)."""
    problems = []
    if len(password) < MIN_PASSWORD:
        problems.append(f"at least {MIN_PASSWORD} characters")
    if not any(char.isupper() for char in password):
        problems.append("an upper-case letter")
    if not any(char.islower() for char in password):
        problems.append("a lower-case letter")
    if all(char.isalnum() for char in password):
        problems.append("a special (non-alphanumeric) character")
    return problems


def password_schema() -> dict[str, Any]:
    """`Password` as a JSON schema: the four rules of `password_problems`, with Python's
    upper case, lower case and alphanumeric written out as character classes (a pattern
    matches anywhere in the text: "holds one of these"; not only alphanumeric characters)."""
    alphanumeric = {"pattern": f"^{char_class(str.isalnum)}*$"}
    return {
        "type": "string",
        "minLength": MIN_PASSWORD,
        "allOf": [
            {"pattern": char_class(str.isupper)},
            {"pattern": char_class(str.islower)},
            {"not": alphanumeric},
        ],
        "description": f"Partoo's policy: at least {MIN_PASSWORD} characters, an upper-case "
        "letter, a lower-case letter and a special (non-alphanumeric) character",
    }


def describe_password_problems(problems: list[str]) -> str:
    return "the password does not meet Partoo's policy; it needs " + ", ".join(problems)


def _policy(password: str) -> str:
    problems = password_problems(password)
    if problems:
        raise ValueError(describe_password_problems(problems))
    return password


Password = Annotated[str, AfterValidator(_policy)]
SidebarPage = Literal[
    "bulk_modification",
    "diffusion",
    "feedback_management",
    "messages",
    "posts",
    "presence_analytics",
    "review_analytics",
    "review_invite",
    "review_management",
]


class UpdateUserBody(BaseModel):
    """The update-user request body: every property optional, none nullable."""

    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)

    email: Email | None = None
    first_name: str | None = None
    last_name: str | None = None
    org_id: int | None = None
    accesses: list[list[int]] | None = None
    business_ids: list[str] | None = None
    role: Role | None = None
    custom_role: str | None = None
    sidebar_pages: list[SidebarPage] | None = None
    status: Literal["active", "invited"] | None = None
    disabled: bool | None = None
    password: Password | None = None
    lang: Lang | None = None
    sso_only: bool | None = None
    receive_reviews_email_notifications: bool | None = None

    @field_validator("*")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("null is not accepted: Partoo cannot clear this field")
        return value


class UpdateUserAnswer(BaseModel):
    """The 200 answer: `{"id": ..., "status": "success"}`."""

    model_config = ConfigDict(extra="allow")

    id: Any = None
    status: Literal["success"] | None = None
