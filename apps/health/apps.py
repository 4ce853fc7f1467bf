"""The health app: declarative specs, pluggable checks, a leased concurrent runner, /metrics."""

from importlib import import_module

from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "apps.health"
    label = "health"
    verbose_name = "Health"

    def ready(self) -> None:
        from apps.core.demo import register_seeder
        from apps.core.metrics import register_collector
        from apps.health import demo, metrics
        from apps.health.checks import BUILTIN_MODULES

        # Importing a module registers its check types (each class is decorated with @register).
        for module in BUILTIN_MODULES:
            import_module(module)
        register_collector(metrics.collect)
        register_seeder(self.label, demo.seed)
