"""`Email` must be `EmailStr` exactly: same accepted values, same normalised result, same
errors. The fast path may only skip email_validator for values it would return unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import EmailStr, TypeAdapter, ValidationError

from core.email_address import Email, is_plain

FAST = TypeAdapter(Email)
REFERENCE = TypeAdapter(EmailStr)

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
DOMAIN_CHARS = "abzAZ09-"


def outcome(adapter: TypeAdapter[str], value: str) -> tuple[bool, str]:
    try:
        return True, adapter.validate_python(value)
    except ValidationError as exc:
        return False, exc.errors()[0]["msg"]


def label() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(DOMAIN_CHARS, min_size=0, max_size=8),
        st.sampled_from(["xn--bcher-kva", "test", "local", "localhost", "onion", "arpa", "com"]),
        st.text(DOMAIN_CHARS, min_size=60, max_size=66),
    )


addresses = st.builds(
    lambda local, labels, extra: f"{local}@{'.'.join(labels)}{extra}",
    st.text(ATEXT + ".", min_size=0, max_size=70),
    st.lists(label(), min_size=0, max_size=4),
    st.sampled_from(["", " ", "\n", ".", "é", "@x.com"]),
)


@settings(max_examples=1000, deadline=None)
@given(addresses)
def test_email_is_emailstr(value: str) -> None:
    """Generated near the edges of the fast path: every answer is EmailStr's."""
    assert outcome(FAST, value) == outcome(REFERENCE, value)
    if is_plain(value):
        assert REFERENCE.validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "jane.doe@example.com",
        "o'hara+hr@mail.example.co.uk",
        "JANE@EXAMPLE.COM",
        "jane@Example.com",
        "a@b.test",
        "a@sub.localhost",
        "a@printer.local",
        "a@xn--bcher-kva.example",
        "a@bücher.example",
        "Jane <jane@example.com>",
        " jane@example.com ",
        "a..b@example.com",
        "a@example",
        "a@123.456",
        "a@-x.com",
        "x" * 64 + "@example.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 63 + ".com",
        "a@" + "b" * 64 + ".com",
        "a@" + ".".join(["c" * 60] * 4) + ".com",
        "",
    ],
)
def test_edge_cases_match_emailstr(value: str) -> None:
    assert outcome(FAST, value) == outcome(REFERENCE, value)


def test_plain_addresses_take_the_fast_path() -> None:
    """The point of the type: the common shape never reaches email_validator."""
    assert is_plain("jane.doe@example.com")
    assert is_plain("user42.v7@mail.example.org")
    assert not is_plain("Jane@Example.com")  # the domain is lower-cased by email_validator
    assert not is_plain("a@b.test")


def test_json_schema_is_emailstr() -> None:
    assert FAST.json_schema() == REFERENCE.json_schema() == {"type": "string", "format": "email"}
