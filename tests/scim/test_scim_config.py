"""`sources[].scim` in the configuration: off by default, and refused where it could never
work (identity providers authenticate with a bearer token only, never a signature)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import Settings

SECRET = "a-secret-of-sixteen-chars"


def _settings(source: dict[str, object], **gateway: object) -> Settings:
    return Settings.model_validate({"sources": [source], "gateway": gateway})


def test_scim_is_off_unless_enabled() -> None:
    """A source provisions over SCIM only when it says `scim: true`."""
    assert _settings({"name": "hris", "token": SECRET}).sources[0].scim is False
    assert _settings({"name": "okta", "token": SECRET, "scim": True}).sources[0].scim is True


def test_a_scim_source_cannot_require_signatures() -> None:
    """`scim: true` with `require_signature`, or with `gateway.require_signatures`, is refused
    at load, naming the source."""
    with pytest.raises(ValidationError, match="require_signature"):
        _settings(
            {
                "name": "okta",
                "token": SECRET,
                "hmac_secret": SECRET + "x",
                "require_signature": True,
                "scim": True,
            }
        )
    with pytest.raises(ValidationError, match=r"SCIM sources \['okta'\]"):
        _settings(
            {"name": "okta", "token": SECRET, "hmac_secret": SECRET + "x", "scim": True},
            require_signatures=True,
        )
