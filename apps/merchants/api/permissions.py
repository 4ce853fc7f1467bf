"""Who may use the Support Hub API: signed-in users who act for an active merchant, nobody else
(staff included: they work cases in the admin)."""

from rest_framework.permissions import BasePermission

from apps.merchants.selectors import merchant_for_user


class IsHubUser(BasePermission):
    message = "The Support Hub is for merchant users."

    def has_permission(self, request, view) -> bool:
        merchant = merchant_for_user(request.user)
        return merchant is not None and merchant.is_active
