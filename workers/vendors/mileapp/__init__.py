"""MileApp (`kind: mileapp`): `PATCH /user`, the user id carried in the body."""

from workers.vendors.mileapp.adapter import MileAppAdapter

__all__ = ["MileAppAdapter"]
