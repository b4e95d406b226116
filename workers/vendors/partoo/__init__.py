"""Partoo (`kind: partoo`): `POST /user/{user_id}` with patch semantics, `x-APIKey` auth."""

from workers.vendors.partoo.adapter import PartooAdapter

__all__ = ["PartooAdapter"]
