"""Plaspy / Flotas (`kind: plaspy`): `PATCH /api/users/{userId}` with a JSON Patch body.

The kind's folder: `adapter.py` and `schema.py` (production), `simulator.py` (the sandbox's
simulator), `testing.py` (what the shared test tables need of this kind).
"""

from workers.vendors.kind import VendorKind
from workers.vendors.plaspy.adapter import PlaspyAdapter

KIND = VendorKind(
    name="plaspy",
    summary="Plaspy / Flotas: PATCH /api/users/{userId}, an RFC 6902 JSON Patch",
    adapter=PlaspyAdapter,
    demo_user_id="usr-12345",
    simulator=f"{__name__}.simulator",
    fixtures=f"{__name__}.testing",
)

__all__ = ["KIND", "PlaspyAdapter"]
