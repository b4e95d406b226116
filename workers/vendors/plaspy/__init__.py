"""Plaspy / Flotas (`kind: plaspy`): `PATCH /api/users/{userId}` with a JSON Patch body."""

from workers.vendors.plaspy.adapter import PlaspyAdapter

__all__ = ["PlaspyAdapter"]
