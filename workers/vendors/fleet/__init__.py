"""Fleet (`kind: fleet`): `PATCH /users/{user_id}`, a partial body where `null` clears.

The kind's folder: `adapter.py` and `schema.py` (production), `simulator.py` (the sandbox's
simulator), `testing.py` (what the shared test tables need of this kind).
"""

from workers.vendors.fleet.adapter import FleetAdapter
from workers.vendors.kind import VendorKind

KIND = VendorKind(
    name="fleet",
    summary="Fleet: PATCH /users/{user_id}, a partial body where null clears",
    adapter=FleetAdapter,
    demo_user_id="42",
    simulator=f"{__name__}.simulator",
    fixtures=f"{__name__}.testing",
)

__all__ = ["KIND", "FleetAdapter"]
