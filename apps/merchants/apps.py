from django.apps import AppConfig


class MerchantsConfig(AppConfig):
    name = "apps.merchants"
    label = "merchants"

    def ready(self) -> None:
        from apps.core.demo import register_seeder
        from apps.merchants import demo

        register_seeder(self.label, demo.seed)
        # Hub threads live on cases in the demo queues, which the cases seeder makes after this one.
        register_seeder("hub", demo.seed_hub, after=("cases",))
