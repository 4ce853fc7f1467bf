from django.apps import AppConfig


class CasesConfig(AppConfig):
    name = "apps.cases"
    label = "cases"

    def ready(self) -> None:
        from apps.cases import demo, metrics
        from apps.core.demo import register_seeder
        from apps.core.metrics import register_collector

        register_collector(metrics.collect)
        # Demo queues are staffed with the demo agents; demo cases name the demo merchants.
        register_seeder(self.label, demo.seed, after=("assignment", "merchants"))
