"""What every section of the configuration shares: strict models, names, credentials."""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    SecretStr,
)

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""Names of sources and vendor instances: they appear in URLs, Redis keys and metrics."""

SKIP_CROSS_CHECKS = "skip_cross_checks"
"""Validation context key: validate each section but not the checks across them (the loader
asks for it to check further what of a faulty file is valid)."""


class SettingsProblems(ValueError):
    """Every cross-section problem of a config, each `key.path: message` (the loader reads
    them back one by one to place each in the file)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MIN_SECRET_LENGTH = 16
"""Shortest bearer token or HMAC secret accepted in clear."""

SHA256_HEX_PATTERN = r"^[0-9a-fA-F]{64}$"


def token_digest(token: str) -> bytes:
    """SHA-256 of a bearer token: what `token_sha256` holds (as hex) and what is compared."""
    return hashlib.sha256(token.encode()).digest()


def _long_enough(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
    return value


LongSecret = Annotated[SecretStr, AfterValidator(_long_enough)]
"""A bearer token or HMAC secret given in clear: at least 16 characters."""


def one_token(
    where: str, clear: SecretStr | None, hashed: str | None, *, required: bool
) -> bytes | None:
    """The SHA-256 digest of a credential given as `<name>` or `<name>_sha256`, at most one."""
    if clear is not None and hashed is not None:
        raise ValueError(f"give {where} or {where}_sha256, not both")
    if clear is not None:
        return token_digest(clear.get_secret_value())
    if hashed is not None:
        return bytes.fromhex(hashed)
    if required:
        raise ValueError(f"one of {where} or {where}_sha256 is required")
    return None
