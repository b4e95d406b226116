"""SCIM 2.0 (`kind: scim`): any SCIM service provider, `PATCH /Users/{id}` with a PatchOp.

The kind's folder: `adapter.py` and `schema.py` (production), `simulator.py` (the sandbox's
simulator), `testing.py` (what the shared test tables need of this kind).
"""

from workers.vendors.kind import VendorKind
from workers.vendors.scim.adapter import ScimAdapter

KIND = VendorKind(
    name="scim",
    summary="SCIM 2.0 service provider: PATCH /Users/{id}, a PatchOp (RFC 7644)",
    adapter=ScimAdapter,
    demo_user_id="2819c223-7f76-453a-919d-413861904646",
    simulator=f"{__name__}.simulator",
    fixtures=f"{__name__}.testing",
)

__all__ = ["KIND", "ScimAdapter"]
