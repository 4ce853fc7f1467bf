"""Check types: one small interface (`run() -> CheckOutcome`) and a registry of types by name.

Adding a type is one class decorated with `@register`; the built-in modules below are
imported by `HealthConfig.ready()` so their types are registered in every process.
"""

from apps.health.checks.base import REGISTRY, Check, CheckOutcome, get_type, register

BUILTIN_MODULES = (
    "apps.health.checks.network",
    "apps.health.checks.logs",
    "apps.health.checks.resource",
    "apps.health.checks.platform",
)

__all__ = ["BUILTIN_MODULES", "REGISTRY", "Check", "CheckOutcome", "get_type", "register"]
