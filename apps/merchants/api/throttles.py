"""Per-user request rates of the Support Hub API (HUB_THROTTLE_RATES), counted in the default
cache (Redis), so every web process shares them. A refusal is a 429 with Retry-After."""

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class HubThrottle(UserRateThrottle):
    """Every hub request of a user."""

    scope = "hub"

    def get_rate(self) -> str:
        # Read per request, not frozen at import as DRF's THROTTLE_RATES is: tests and deployments
        # change the setting.
        return settings.HUB_THROTTLE_RATES[self.scope]


class HubWriteThrottle(HubThrottle):
    """Writes of a user (posts, read markers), on top of HubThrottle."""

    scope = "hub_write"

    def allow_request(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)


class HubLoginThrottle(AnonRateThrottle):
    """Token logins per client address, whatever the username (django-axes locks per username)."""

    scope = "hub_login"

    def get_rate(self) -> str:
        return settings.HUB_THROTTLE_RATES[self.scope]

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
