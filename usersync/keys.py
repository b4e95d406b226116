"""Every Redis key usersync writes, in one place (arq's own keys live in arq.constants)."""

from __future__ import annotations

PREFIX = "usersync:"
DEAD_LETTERS = PREFIX + "dead"
"""Sorted set of dead deliveries (member `source|event_id|target`, score = time of death)."""


def event(source: str, event_id: str) -> str:
    """Hash: the stored event, its acceptance answer, and one `t:<target>` status per target."""
    return f"{PREFIX}event:{source}:{event_id}"


def links(user_id: str) -> str:
    """Hash: vendor instance -> that vendor's id for the user (identity links)."""
    return f"{PREFIX}links:{user_id}"


def profile(user_id: str) -> str:
    """Hash: newest name parts of the user, with `v:<part>` holding the order key that set it."""
    return f"{PREFIX}profile:{user_id}"


def delivery_job_id(source: str, event_id: str, target: str) -> str:
    """arq job id of one (event, target) delivery: fixed, so a job is never enqueued twice."""
    return f"deliver:{source}:{event_id}:{target}"
