"""The registered vendor kinds as the shared test tables see them: every per-kind table under
tests/ is built here from `workers.vendors.registry.KINDS` and each kind's testing module, so
a kind added to the registry is picked up without a line changed under tests/."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from workers.vendors.registry import KINDS
from workers.vendors.testing import KindFixtures, fixtures_of

NAMES: Final = tuple(KINDS)
"""The registered kinds, in registry order."""
FIXTURES: Final[Mapping[str, KindFixtures]] = MappingProxyType(
    {name: fixtures_of(kind) for name, kind in KINDS.items()}
)
DEMO_USERS: Final[Mapping[str, str]] = MappingProxyType(
    {name: kind.demo_user_id for name, kind in KINDS.items()}
)
"""Kind -> the vendor user id the sandbox seeds."""
TOKENS: Final[Mapping[str, str]] = MappingProxyType(
    {name: fixtures.token for name, fixtures in FIXTURES.items()}
)
"""Kind -> a credential its simulator accepts."""
