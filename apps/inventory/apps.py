from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "apps.inventory"
    label = "inventory"

    def ready(self) -> None:
        from apps.core.demo import register_seeder
        from apps.core.metrics import register_collector
        from apps.inventory import demo, metrics

        register_collector(metrics.collect)
        register_seeder(self.label, demo.seed, after=("merchants",))  # a demo store per demo merchant
