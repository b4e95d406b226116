"""Identity links as the store reports them: who set each, what an ingest changed or refused.

A link (vendor instance -> the user's id there) decides where every later delivery to that
instance goes, whichever source posts it; so the store records who set it and when, reports
each change for the log, and refuses a change a `create`-mode source may not make.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LinkChange:
    """A link an ingest moved from one id to another (not one it created)."""

    vendor: str
    old_id: str
    new_id: str


class Ingested(tuple[bool, bytes]):
    """An ingest's answer: `(created, answer)` as callers unpack it (False and the original
    acceptance for a duplicate), and the links it changed, for the gateway to log."""

    link_changes: tuple[LinkChange, ...]

    def __new__(
        cls, created: bool, answer: bytes, link_changes: tuple[LinkChange, ...] = ()
    ) -> Ingested:
        self = super().__new__(cls, (created, answer))
        self.link_changes = link_changes
        return self

    @property
    def created(self) -> bool:
        return self[0]

    @property
    def answer(self) -> bytes:
        return self[1]


class LinkConflict(Exception):
    """An event of a `create`-mode source gave a link another id than the one stored, so
    nothing of it was written. `ids`: vendor -> (stored id, refused id), for the log only."""

    def __init__(
        self, source: str, event_id: str, user_id: str, ids: Mapping[str, tuple[str, str]]
    ) -> None:
        super().__init__(f"{source} may not change links of {user_id}: {sorted(ids)}")
        self.source = source
        self.event_id = event_id
        self.user_id = user_id
        self.ids = dict(ids)


@dataclass(frozen=True)
class LinkDetail:
    """A stored link and who set it when (None for a link stored before they were recorded)."""

    id: str
    set_by: str | None
    set_at: str | None
