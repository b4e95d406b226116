"""usersync's whole Redis layout, in one place: every key, every hash field, every Lua script.

A *pair* is one (vendor instance, canonical user): the unit of ordering, coalescing and the
one-call-in-flight lease. `docs/delivery.md` describes how the pair keys work together.
arq's own keys live in `arq.constants`.

The Lua scripts (`core/lua/<name>.lua`, loaded by `core.scripts.load_lua`) spell no field or
key part themselves: they write `${NAME}` for a string constant of this module (inside a Lua
string: `'${PAIR_JOB}'`) and for a tuple of them (a Lua argument list, quoted). `LAYOUT`
says which fields each hash may hold; tests/test_layout.py holds a real flow's Redis to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from core.event import NAME_PARTS
from core.status import FINAL_STATES as _FINAL_STATES

PREFIX = "usersync:"
DEAD_LETTERS = PREFIX + "dead"
"""Sorted set of dead deliveries (member: a `dead_letter_id`, score = time of death, ms)."""
JOB_SEQUENCE = PREFIX + "seq"
"""Counter that makes every pair job id unique, so arq never sees an id twice."""
EVENT_PREFIX = PREFIX + "event:"
"""`event(source, event_id)` is this + `event_ref(source, event_id)`: how the pair scripts
reach an event from a ref in a pending set."""
OWED_PAIRS = PREFIX + "owed"
"""Set of the pending-set keys (`pending(target, user_id)`) of every pair with work waiting:
the ingest and replay scripts add, the begin and commit scripts remove a pair once its
pending set is empty. The reconciler walks it (`core.pairs.PairQueue.reconcile`)."""
HEARTBEAT_PREFIX = PREFIX + "worker:"
"""`heartbeat(worker_id)` is this + the worker id (hex): how the scripts reach a worker's
heartbeat from the id a lease token or an arq in-progress key holds."""
RECONCILE_LOCK = PREFIX + "reconcile"
"""String (PX): held by the one worker running the reconciler's pass this interval."""
DEAD_LETTER_SEPARATOR = ":"
"""Joins a source and an event id into an event ref, and a ref and a target into a
dead-letter id: unambiguous, since sources and targets hold no `:`."""


# -- keys ---------------------------------------------------------------------------------


def event(source: str, event_id: str) -> str:
    """Hash: the stored event (`EVENT_*` fields): its acceptance answer, the event, when it was
    received, and per target its status and attempt history."""
    return EVENT_PREFIX + event_ref(source, event_id)


def event_ref(source: str, event_id: str) -> str:
    """How pair state (pending sets, dead letters) refers to an event."""
    return f"{source}{DEAD_LETTER_SEPARATOR}{event_id}"


def links(user_id: str) -> str:
    """Hash: vendor instance -> that vendor's id for the user (identity links)."""
    return f"{PREFIX}links:{user_id}"


def link_setters(user_id: str) -> str:
    """Hash: who set each identity link and when (`LINK_SET_BY_PREFIX`, `LINK_SET_AT_PREFIX`).
    Kept apart from `links` so the worker's read of a link stays one HGET; written together
    with it, always in the same script or transaction."""
    return f"{PREFIX}link-setters:{user_id}"


def profile(user_id: str) -> str:
    """Hash: newest name parts of the user (`PROFILE_PARTS`), each with the order key that set
    it (`PROFILE_ORDER_PREFIX`)."""
    return f"{PREFIX}profile:{user_id}"


def pending_pair(pending_key: str) -> tuple[str, str] | None:
    """(target, user_id) of a `pending` key (targets hold no `:`), None if it is not one."""
    head = f"{PREFIX}pending:"
    if not pending_key.startswith(head):
        return None
    target, _, user_id = pending_key[len(head) :].partition(":")
    return (target, user_id) if target and user_id else None


def pair(target: str, user_id: str) -> str:
    """Hash: the pair's scheduling state (`PAIR_JOB`, `PAIR_SLOT`, `PAIR_ISOLATE`)."""
    return f"{PREFIX}pair:{target}:{user_id}"


def pending(target: str, user_id: str) -> str:
    """Sorted set: event refs waiting for this pair, scored by their order key."""
    return f"{PREFIX}pending:{target}:{user_id}"


def waiting(target: str) -> str:
    """Sorted set: every event waiting for the vendor instance, whatever the user (member: its
    ref, score: when it started waiting, ms: received, or replayed). The ingest, commit and
    replay scripts keep it with the pending sets, so `/metrics` reads the vendor's backlog and
    its oldest wait in two cheap commands (`core.metrics`)."""
    return f"{PREFIX}waiting:{target}"


def applied(target: str, user_id: str) -> str:
    """Hash: field key -> order key of the newest value the vendor has acknowledged."""
    return f"{PREFIX}applied:{target}:{user_id}"


def lease(target: str, user_id: str) -> str:
    """String: the token of the one worker allowed to call the vendor for this pair (PX);
    the token names the worker (`lease_token`), so a run can see its holder is dead."""
    return f"{PREFIX}lease:{target}:{user_id}"


def lease_token(job_id: str, worker_id: str, nonce: str) -> str:
    """A run's lease token: its job id, its worker's id (`HEARTBEAT_PREFIX`), a nonce. The
    begin script reads the worker id back from `:<worker id>/<nonce>` at the end."""
    return f"{job_id}:{worker_id}/{nonce}"


def heartbeat(worker_id: str) -> str:
    """String (PX, refreshed every second): present while the worker process lives. The
    begin and claim scripts take over a lease or a claimed job whose worker's key is gone."""
    return HEARTBEAT_PREFIX + worker_id


def pair_job_prefix(target: str, user_id: str) -> str:
    """arq job ids of a pair: this prefix + a unique sequence number."""
    return f"deliver:{target}:{user_id}:"


def vendor(name: str) -> str:
    """Hash: a vendor instance's shared state (`VENDOR_*` fields): circuit breaker, adaptive
    rate, call counters, usage the vendor reports."""
    return f"{PREFIX}vendor:{name}"


def probe(name: str) -> str:
    """String: held by the one call allowed to probe a vendor whose circuit is half-open."""
    return f"{PREFIX}probe:{name}"


def held(name: str) -> str:
    """Sorted set: pair jobs waiting for the vendor's circuit to close (scored by their time);
    when a call succeeds after the circuit was open, they are moved to now in arq's queue."""
    return f"{PREFIX}held:{name}"


def signature(source: str, signature_hex: str) -> str:
    """String (PX): a request signature the gateway accepted, kept twice the allowed clock
    skew so the same signed request cannot be replayed while its timestamp is still valid."""
    return f"{PREFIX}sig:{source}:{signature_hex}"


def source_rate(source: str) -> str:
    """String (PX): the GCRA theoretical arrival time (ms) of a source's event posts."""
    return f"{PREFIX}source-rate:{source}"


def scim_user(source: str, resource_id: str) -> str:
    """Hash: one SCIM User resource a source's identity provider provisioned
    (`SCIM_RESOURCE`, `SCIM_VERSION`, `SCIM_NAME_KEY`); per source, so one source's users are invisible to
    another's."""
    return f"{PREFIX}scim:{source}:user:{resource_id}"


def scim_users(source: str) -> str:
    """Sorted set: the ids of a source's SCIM User resources, scored by creation time (ms):
    the order lists and pages follow."""
    return f"{PREFIX}scim:{source}:users"


def scim_user_name(source: str, name_key: str) -> str:
    """String: the id of the source's SCIM User resource whose `userName` has this comparison
    form (NFC, lower case): uniqueness per source, and `filter=userName eq "..."`. One key a
    name, so writes to different users never contend."""
    return f"{PREFIX}scim:{source}:user-name:{name_key}"


def dead_letters_of(vendor_name: str) -> str:
    """Sorted set: the dead letters of one vendor instance (same members as DEAD_LETTERS)."""
    return f"{DEAD_LETTERS}:{vendor_name}"


def dead_letter_id(source: str, event_id: str, target: str) -> str:
    """A dead letter's id in the API and its member in the dead-letter sets."""
    return event_ref(source, event_id) + DEAD_LETTER_SEPARATOR + target


def dead_letter_source_prefix(source: str) -> str:
    """What the ids of one source's dead letters start with."""
    return source + DEAD_LETTER_SEPARATOR


def parse_dead_letter_id(letter_id: str) -> tuple[str, str, str] | None:
    """(source, event_id, target) of a dead-letter id, or None if it is not one."""
    source, _, rest = letter_id.partition(DEAD_LETTER_SEPARATOR)
    event_id, _, target = rest.rpartition(DEAD_LETTER_SEPARATOR)
    if not source or not event_id or not target:
        return None
    return source, event_id, target


# -- hash fields --------------------------------------------------------------------------

EVENT_ACCEPTED = "accepted"
"""Event hash: the acceptance answer (JSON) given to the source: also the dedupe record, so
a repeated event id is answered the same."""
EVENT_BODY = "event"
"""Event hash: the event as stored (JSON, secrets encrypted)."""
EVENT_RECEIVED_AT = "received_at"
"""Event hash: when the gateway received it (UTC ISO time)."""
EVENT_STATUS_PREFIX = "t:"
"""Event hash: + a target: that target's status (`core.status.TargetStatus` JSON)."""
EVENT_HISTORY_PREFIX = "h:"
"""Event hash: + a target: that target's attempt history (JSON list, the last 20)."""


FINAL_STATES = tuple(sorted(_FINAL_STATES))
"""The target states that owe nothing more (`core.status.FINAL_STATES`), for the scripts: an
event hash gets its retention TTL only once every target is in one of them."""


def status_field(target: str) -> str:
    """The event hash field holding `target`'s status."""
    return EVENT_STATUS_PREFIX + target


def history_field(target: str) -> str:
    """The event hash field holding `target`'s attempt history."""
    return EVENT_HISTORY_PREFIX + target


PAIR_JOB = "job"
"""Pair hash: the id of the pair's one scheduled arq job (no field: no job)."""
PAIR_SLOT = "slot"
"""Pair hash: a rate-limit slot (ms, the vendor guard's clock) the pair reserved."""
PAIR_ISOLATE = "isolate"
"""Pair hash: how many refs are still to be sent one call each, after a refused batch."""
PAIR_URGENT = "urgent"
"""Pair hash: present while the pair holds an urgent change (`core.event.Event.urgent`): its
job is queued ahead of normal ones and its calls take the vendor's urgent rate lane."""
URGENT_LEAD_MS = "1000000000000"
"""How far back an urgent job's queue score is put (ms, about 31 years): arq takes due jobs in
score order, so it runs before every normal job already due."""

PROFILE_PARTS = NAME_PARTS
"""Profile hash: the name parts (`core.event.NAME_PARTS`), named as the user fields they hold."""
PROFILE_ORDER_PREFIX = "v:"
"""Profile hash: + a name part: the order key of the event that set it. The ingest script
writes it; an ordering reset (`core.ordering`) clears these and keeps the parts."""


def profile_order_field(part: str) -> str:
    """The profile field holding the order key that set the name part `part`."""
    return PROFILE_ORDER_PREFIX + part


LINK_SET_BY_PREFIX = "by:"
"""Link-setters hash: + a vendor instance: who set that link (a source's name, or `admin`)."""
LINK_SET_AT_PREFIX = "at:"
"""Link-setters hash: + a vendor instance: when that link was set (UTC ISO time)."""


def link_set_by_field(vendor_name: str) -> str:
    """The link-setters field naming who set the link to `vendor_name`."""
    return LINK_SET_BY_PREFIX + vendor_name


def link_set_at_field(vendor_name: str) -> str:
    """The link-setters field holding when the link to `vendor_name` was set."""
    return LINK_SET_AT_PREFIX + vendor_name


VENDOR_FAILURES = "failures"
"""Vendor hash: consecutive failed calls (reset by a success or a refusal)."""
VENDOR_OPEN_UNTIL = "open_until"
"""Vendor hash: when the open circuit lets a probe through (ms); 0 or none: closed."""
VENDOR_COOLDOWN = "cooldown"
"""Vendor hash: the circuit's current cool-down (ms), doubled by each failed probe."""
VENDOR_OPENED = "opened"
"""Vendor hash: how many times the circuit opened."""
VENDOR_PAUSED_UNTIL = "paused_until"
"""Vendor hash: no call before this time (ms): a `Retry-After` the vendor sent with a 429."""
VENDOR_TAT = "tat"
"""Vendor hash: the rate limit's GCRA theoretical arrival time (ms)."""
VENDOR_FACTOR = "factor"
"""Vendor hash: the share of the configured rate after 429s (climbs back to 1)."""
VENDOR_FACTOR_AT = "factor_at"
"""Vendor hash: when `factor` was last halved (ms)."""
VENDOR_THROTTLED = "throttled"
VENDOR_URGENT_TAT = "urgent_tat"
"""Vendor hash: the urgent lane's next free slot (ms): urgent calls are spaced by the rate."""
VENDOR_OWED = "owed"
"""Vendor hash: slots urgent calls took while normal calls waited: as many normal reserved
slots are given up (their pairs reserve again at the end), so the rate holds."""
"""Vendor hash: how many calls the vendor answered 429."""
VENDOR_CALLS_PREFIX = "calls:"
"""Vendor hash: + a call outcome (`core.vendor_guard.CallOutcome`): how many calls had it."""
VENDOR_USAGE_PREFIX = "usage:"
"""Vendor hash: + a counter name: the newest value the vendor reported (Plaspy's usage)."""
SCIM_RESOURCE = "resource"
"""SCIM user hash: the resource as usersync answers it, JSON, its password sealed
(`core.secrets`)."""
SCIM_VERSION = "version"
"""SCIM user hash: the resource's version, an integer counting its changes: `meta.version`
(the ETag, `W/"<n>"`) and the `user.version` of the events it becomes."""
SCIM_NAME_KEY = "name_key"
"""SCIM user hash: the comparison form of its `userName`, the `scim_user_name` key it holds."""


# -- the layout as data -------------------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """The fields a hash may hold: these names, one of these prefixes + a name, or any name
    when the names are data (`data`: vendor instances, field keys)."""

    names: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    data: bool = False

    def allows(self, name: str) -> bool:
        return self.data or name in self.names or name.startswith(self.prefixes)


LAYOUT: Mapping[Callable[..., str], Fields | None] = {
    event: Fields(
        (EVENT_ACCEPTED, EVENT_BODY, EVENT_RECEIVED_AT),
        (EVENT_STATUS_PREFIX, EVENT_HISTORY_PREFIX),
    ),
    links: Fields(data=True),
    link_setters: Fields(prefixes=(LINK_SET_BY_PREFIX, LINK_SET_AT_PREFIX)),
    profile: Fields(PROFILE_PARTS, (PROFILE_ORDER_PREFIX,)),
    pair: Fields((PAIR_JOB, PAIR_SLOT, PAIR_ISOLATE, PAIR_URGENT)),
    pending: None,
    waiting: None,
    applied: Fields(data=True),
    lease: None,
    heartbeat: None,
    vendor: Fields(
        (
            VENDOR_FAILURES,
            VENDOR_OPEN_UNTIL,
            VENDOR_COOLDOWN,
            VENDOR_OPENED,
            VENDOR_PAUSED_UNTIL,
            VENDOR_TAT,
            VENDOR_FACTOR,
            VENDOR_FACTOR_AT,
            VENDOR_THROTTLED,
            VENDOR_URGENT_TAT,
            VENDOR_OWED,
        ),
        (VENDOR_CALLS_PREFIX, VENDOR_USAGE_PREFIX),
    ),
    probe: None,
    held: None,
    signature: None,
    source_rate: None,
    dead_letters_of: None,
    scim_user: Fields((SCIM_RESOURCE, SCIM_VERSION, SCIM_NAME_KEY)),
    scim_users: None,
    scim_user_name: None,
}
"""Every key builder, with the fields its key may hold if it is a hash (None: not a hash).
With `CONSTANT_KEYS`, every key usersync writes."""
CONSTANT_KEYS = (DEAD_LETTERS, JOB_SEQUENCE, OWED_PAIRS, RECONCILE_LOCK)
"""The keys that take no argument."""


# -- Lua scripts --------------------------------------------------------------------------


class Script(StrEnum):
    """The Lua scripts, one file each: `core/lua/<value>.lua`. A script may start with
    `--!include <name>` lines: the named script's text is put there (shared functions)."""

    PAIR_SCHEDULE = "pair_schedule"
    """Shared: `schedule()`, giving a pair its next arq job (ingest, commit and replay)."""
    INGEST = "ingest"
    PAIR_BEGIN = "pair_begin"
    PAIR_COMMIT = "pair_commit"
    PAIR_REPLAY = "pair_replay"
    VENDOR_FACTOR = "vendor_factor"
    """Shared: Redis's clock and the rate factor, for permit and record."""
    VENDOR_PERMIT = "vendor_permit"
    VENDOR_RECORD = "vendor_record"
    SOURCE_RATE = "source_rate"
    """Shared: `take_rate()`, the GCRA take of a source's posts (its take script, ingest)."""
    SOURCE_RATE_TAKE = "source_rate_take"
    ORDERING_RESET = "ordering_reset"
    DEAD_LETTERS_COUNT_PREFIX = "dead_letters_count_prefix"
    PAIR_RECONCILE = "pair_reconcile"
    CLAIM = "claim"
    """The worker's claim of a poll's due arq jobs (arq's keys only)."""
    JOB_FINISH = "job_finish"
    """The end of a claimed arq job, as arq writes it (arq's keys only)."""
