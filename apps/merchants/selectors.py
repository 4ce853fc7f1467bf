"""Read queries of the merchants app."""

from __future__ import annotations

from apps.merchants.models import Merchant


def merchant_for_user(user) -> Merchant | None:
    """The merchant a user acts for, or None (staff and anonymous users act for none)."""
    if not getattr(user, "is_authenticated", False):
        return None
    membership = getattr(user, "merchant_membership", None)
    return membership.merchant if membership else None
