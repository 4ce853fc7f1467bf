"""Casehub's admin site: Django's, closed to every user who acts for a merchant (merchants use
the API only), even one that was made staff by mistake. Installed in place of
django.contrib.admin, so `admin.site` is this site everywhere."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class CasehubAdminSite(admin.AdminSite):
    def has_permission(self, request) -> bool:
        from apps.merchants.selectors import merchant_for_user

        # The membership comes with the session's user (apps.core.auth.AccountBackend): no query.
        return super().has_permission(request) and merchant_for_user(request.user) is None


class ReadOnlyAdmin(admin.ModelAdmin):
    """For rows only the system writes (history, records of what happened): listed and viewed in
    the admin, never added, changed or deleted there."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class CasehubAdminConfig(AdminConfig):
    default_site = "apps.core.admin_site.CasehubAdminSite"

    def ready(self) -> None:
        super().ready()  # autodiscovers every app's admin, django-celery-beat's included
        from apps.core.admin_schedules import schedules_admin_register

        schedules_admin_register(admin.site)
