from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Platform"

    def ready(self) -> None:
        from apps.core import demo, tenancy

        demo.register_seeder(self.label, demo.seed)
        # The sandbox tenant: schema kept migrated by `migrate`, tenant carried by Celery messages.
        tenancy.install()
        # Permissions only exist once every app has migrated, so the role groups (created by
        # a migration) receive their permissions after each `migrate`.
        post_migrate.connect(_sync_roles, dispatch_uid="casehub_roles_sync")


def _sync_roles(sender, using="default", **kwargs) -> None:
    from django.apps import apps

    from apps.core.roles import roles_sync_permissions

    # post_migrate fires once per app with models, in INSTALLED_APPS order; by the last one
    # every app's permissions exist.
    if sender.label == [a for a in apps.get_app_configs() if a.models_module][-1].label:
        roles_sync_permissions(using=using)
