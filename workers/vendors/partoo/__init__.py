"""Partoo (`kind: partoo`): `POST /user/{user_id}` with patch semantics, `x-APIKey` auth.

The kind's folder: `adapter.py` and `schema.py` (production), `simulator.py` (the sandbox's
simulator), `testing.py` (what the shared test tables need of this kind).
"""

from workers.vendors.kind import VendorKind
from workers.vendors.partoo.adapter import PartooAdapter

KIND = VendorKind(
    name="partoo",
    summary="Partoo: POST /user/{user_id} with patch semantics, x-APIKey auth",
    adapter=PartooAdapter,
    demo_user_id="5309c3a237bbc544d8e26737",
    simulator=f"{__name__}.simulator",
    fixtures=f"{__name__}.testing",
)

__all__ = ["KIND", "PartooAdapter"]
