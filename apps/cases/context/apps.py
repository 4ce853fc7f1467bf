from django.apps import AppConfig


class ContextConfig(AppConfig):
    name = "apps.cases.context"
    label = "context"
    verbose_name = "Context (outside systems)"
    default_auto_field = "django.db.models.BigAutoField"
