"""MileApp (`kind: mileapp`): `PATCH /user`, the user id carried in the body.

The kind's folder: `adapter.py` and `schema.py` (production), `simulator.py` (the sandbox's
simulator), `testing.py` (what the shared test tables need of this kind).
"""

from workers.vendors.kind import VendorKind
from workers.vendors.mileapp.adapter import MileAppAdapter

KIND = VendorKind(
    name="mileapp",
    summary="MileApp: PATCH /user, the user id carried in the body",
    adapter=MileAppAdapter,
    demo_user_id="65c1f4eeca7c4816d94587b7",
    simulator=f"{__name__}.simulator",
    fixtures=f"{__name__}.testing",
)

__all__ = ["KIND", "MileAppAdapter"]
