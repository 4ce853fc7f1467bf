from django.apps import AppConfig


class AssignmentConfig(AppConfig):
    name = "apps.assignment"
    label = "assignment"

    def ready(self) -> None:
        # The demo module also holds the demo-only heartbeat task, registered with Celery here.
        from apps.assignment import demo, metrics
        from apps.core.demo import register_seeder
        from apps.core.metrics import register_collector

        register_collector(metrics.collect)
        register_seeder(self.label, demo.seed)
