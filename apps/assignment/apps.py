from django.apps import AppConfig


class AssignmentConfig(AppConfig):
    name = "apps.assignment"
    label = "assignment"

    def ready(self) -> None:
        from apps.assignment import demo
        from apps.core.demo import register_seeder

        register_seeder(self.label, demo.seed)
