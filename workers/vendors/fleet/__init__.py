"""Fleet (`kind: fleet`): `PATCH /users/{user_id}`, a partial body where `null` clears."""

from workers.vendors.fleet.adapter import FleetAdapter

__all__ = ["FleetAdapter"]
