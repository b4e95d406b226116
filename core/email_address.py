"""`Email`: pydantic's `EmailStr`, with a fast path for the plain addresses almost all are.

`EmailStr` runs email_validator on every value (Unicode classes, IDNA, special-use domains),
which was a tenth of an ingest's CPU. An ASCII address of dot-atom local part and lower-case
letter-digit-hyphen domain labels is one email_validator returns unchanged, unless its domain
is special-use (`a@b.test`) or holds an IDNA label (`xn--`): one regular expression recognises
those and returns them as they are; every other value goes through `EmailStr` itself, so what
is accepted, how it is normalised and the error messages stay `EmailStr`'s
(tests/test_email_address.py compares the two). The JSON schema is `EmailStr`'s too.
"""

from __future__ import annotations

import re

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import EmailStr
from pydantic.networks import validate_email

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN = re.compile(
    rf"(?=[^@]{{1,64}}@)(?=.{{1,254}}$){_ATOM}(?:\.{_ATOM})*@(?!.*--)(?:{_LABEL}\.)+[a-z]{{2,63}}"
)
_SPECIAL_SUFFIXES = tuple(f".{name}" for name in SPECIAL_USE_DOMAIN_NAMES)


def is_plain(value: str) -> bool:
    """Whether email_validator would accept `value` and return it unchanged, known without
    running it (False only means: ask email_validator)."""
    return _PLAIN.fullmatch(value) is not None and not value.endswith(_SPECIAL_SUFFIXES)


class Email(EmailStr):
    """An email address, validated and normalised exactly as `EmailStr` does."""

    @classmethod
    def _validate(cls, input_value: str, /) -> str:
        if is_plain(input_value):
            return input_value
        return validate_email(input_value)[1]  # what EmailStr._validate does
