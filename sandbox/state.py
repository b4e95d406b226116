"""In-memory state of the sandbox: users per vendor, the request journal and the fault queue.

Everything lives on one `SandboxState` stored in the application under `STATE_KEY`, so two
sandbox apps in one process (as in tests) never share anything and there is no module state.
The kinds it holds are those of the `UserModel`s it is given; it lists none itself.
"""

from __future__ import annotations

import copy
import hmac
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from aiohttp import web

Document = dict[str, Any]


def _unchanged(doc: Document) -> Document:
    return doc


@dataclass(frozen=True)
class UserModel:
    """How one vendor stores a user: every documented field present, so patches see them all.

    `blank` builds the default document for an id, `demo` the seeded demo user (whose id is
    `demo_id`), `seal` turns any clear-text secret in a document into a hash or a flag
    (nothing is stored in clear) and may raise ValueError for a document the vendor could
    not hold (the control API answers 400), and `id_pattern` is the shape of ids the vendor
    can have (None: any non-empty string).
    """

    blank: Callable[[str], Document]
    demo: Callable[[], Document]
    demo_id: str
    id_key: str = "id"
    seal: Callable[[Document], Document] = _unchanged
    id_pattern: re.Pattern[str] | None = None

    def build(self, user_id: str, fields: Mapping[str, Any]) -> Document:
        """The stored document for a control-API PUT: `fields` merged onto the default."""
        doc = self.blank(user_id)
        identity = doc[self.id_key]
        doc.update(copy.deepcopy(dict(fields)))
        doc[self.id_key] = identity
        return self.seal(doc)


@dataclass
class Fault:
    """One injected misbehaviour, applied to the next `remaining` calls to a vendor."""

    remaining: int = 1
    status: int | None = None
    latency_ms: float = 0
    retry_after: str | None = None
    body_failure: str | None = None
    garbage: bool = False

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JournalEntry:
    """One call a vendor received; `status` is filled in once it has been answered."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    received_at: float
    status: int | None = None

    def describe(self) -> dict[str, Any]:
        """A shallow view (entries are never changed once answered): `asdict` deep-copied
        every header and body, the sandbox's main cost when a benchmark reads journals."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "received_at": self.received_at,
            "status": self.status,
        }


@dataclass
class SandboxState:
    """Users, journals, faults and call counters of every vendor kind in `models`."""

    tokens: Mapping[str, frozenset[str]]
    models: Mapping[str, UserModel]
    seed_demo_users: bool = True
    users: dict[str, dict[str, Document]] = field(default_factory=dict)
    journals: dict[str, list[JournalEntry]] = field(default_factory=dict)
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reset()

    @property
    def kinds(self) -> tuple[str, ...]:
        """The vendor kinds simulated, in the order they were given."""
        return tuple(self.models)

    def reset(self) -> None:
        """Back to the start: no faults, empty journals, only the demo users (if enabled)."""
        self.users = {kind: {} for kind in self.models}
        self.journals = {kind: [] for kind in self.models}
        self.faults = {kind: deque() for kind in self.models}
        self.calls = dict.fromkeys(self.models, 0)
        if self.seed_demo_users:
            for kind, model in self.models.items():
                self.users[kind][model.demo_id] = model.seal(model.demo())

    def accepts(self, kind: str, credential: str | None) -> bool:
        """Whether `credential` is one of the kind's tokens (compared in constant time)."""
        if not credential:
            return False
        given = credential.encode()
        found = False
        for token in self.tokens.get(kind, frozenset()):
            found |= hmac.compare_digest(given, token.encode())
        return found

    def user(self, kind: str, user_id: str) -> Document | None:
        """The stored (mutable) document, or None when the vendor would answer 404."""
        return self.users[kind].get(user_id)

    def put_user(self, kind: str, user_id: str, fields: Mapping[str, Any]) -> Document:
        """Create or replace a user from the control API."""
        doc = self.models[kind].build(user_id, fields)
        self.users[kind][user_id] = doc
        return doc

    def add_fault(self, kind: str, fault: Fault) -> None:
        """Queue a fault behind those already pending for the kind."""
        self.faults[kind].append(fault)

    def take_fault(self, kind: str) -> Fault | None:
        """The fault for this call, if any, counting it as used."""
        queue = self.faults[kind]
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    def record(
        self,
        kind: str,
        *,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: Any,
    ) -> JournalEntry:
        """Journal a received call and count it (Plaspy reports the count as daily usage)."""
        entry = JournalEntry(
            method=method,
            path=path,
            query=query,
            headers=dict(headers),
            body=body,
            received_at=time.time(),
        )
        self.journals[kind].append(entry)
        self.calls[kind] += 1
        return entry

    def clear_journals(self) -> None:
        """Forget every journaled call, of every kind (counters keep counting)."""
        for journal in self.journals.values():
            journal.clear()


STATE_KEY: Final = web.AppKey("sandbox_state", SandboxState)
