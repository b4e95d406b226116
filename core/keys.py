"""Every Redis key usersync writes, in one place (arq's own keys live in arq.constants).

A *pair* is one (vendor instance, canonical user): the unit of ordering, coalescing and the
one-call-in-flight lease. `docs/delivery.md` describes how the pair keys work together.
"""

from __future__ import annotations

PREFIX = "usersync:"
DEAD_LETTERS = PREFIX + "dead"
"""Sorted set of dead deliveries (member `source:event_id:target`, score = time of death)."""
JOB_SEQUENCE = PREFIX + "seq"
"""Counter that makes every pair job id unique, so arq never sees an id twice."""


def event(source: str, event_id: str) -> str:
    """Hash: the stored event, its acceptance answer, one `t:<target>` status and one
    `h:<target>` attempt history per target."""
    return f"{PREFIX}event:{source}:{event_id}"


def event_ref(source: str, event_id: str) -> str:
    """How pair state refers to an event: `event(source, event_id)` is PREFIX + "event:" + ref."""
    return f"{source}:{event_id}"


def links(user_id: str) -> str:
    """Hash: vendor instance -> that vendor's id for the user (identity links)."""
    return f"{PREFIX}links:{user_id}"


def link_setters(user_id: str) -> str:
    """Hash: who set each identity link and when: `by:<vendor>` (a source's name, or `admin`)
    and `at:<vendor>` (UTC ISO time). Kept apart from `links` so the worker's read of a link
    stays one HGET; written together with it, always in the same script or transaction."""
    return f"{PREFIX}link-setters:{user_id}"


def profile(user_id: str) -> str:
    """Hash: newest name parts of the user, with `v:<part>` holding the order key that set it."""
    return f"{PREFIX}profile:{user_id}"


PROFILE_ORDER = "v:"
"""The prefix of a profile field holding a name part's order key (`v:given_name`), as the
ingest script (`core.store`) writes it; an ordering reset (`core.ordering`) clears
these and keeps the parts."""


def pair(target: str, user_id: str) -> str:
    """Hash: the pair's scheduling state: `job` (its one scheduled arq job), `slot` (a rate-limit
    slot it reserved), `isolate` (refs still to send one by one after a refused batch)."""
    return f"{PREFIX}pair:{target}:{user_id}"


def pending(target: str, user_id: str) -> str:
    """Sorted set: event refs waiting for this pair, scored by their order key."""
    return f"{PREFIX}pending:{target}:{user_id}"


def applied(target: str, user_id: str) -> str:
    """Hash: field key -> order key of the newest value the vendor has acknowledged."""
    return f"{PREFIX}applied:{target}:{user_id}"


def lease(target: str, user_id: str) -> str:
    """String: the token of the one worker allowed to call the vendor for this pair (PX)."""
    return f"{PREFIX}lease:{target}:{user_id}"


def pair_job_prefix(target: str, user_id: str) -> str:
    """arq job ids of a pair: this prefix + a unique sequence number."""
    return f"deliver:{target}:{user_id}:"


def vendor(name: str) -> str:
    """Hash: a vendor instance's shared state: circuit breaker, adaptive rate, usage, counters."""
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


def dead_letters_of(vendor_name: str) -> str:
    """Sorted set: the dead letters of one vendor instance (same members as DEAD_LETTERS)."""
    return f"{DEAD_LETTERS}:{vendor_name}"


def dead_letter_id(source: str, event_id: str, target: str) -> str:
    """A dead letter's id in the API: unambiguous, since sources and targets hold no `:`."""
    return f"{source}:{event_id}:{target}"


def parse_dead_letter_id(letter_id: str) -> tuple[str, str, str] | None:
    """(source, event_id, target) of a dead-letter id, or None if it is not one."""
    source, _, rest = letter_id.partition(":")
    event_id, _, target = rest.rpartition(":")
    if not source or not event_id or not target:
        return None
    return source, event_id, target
