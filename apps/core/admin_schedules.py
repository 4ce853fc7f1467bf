"""The admin's periodic tasks (django-celery-beat) list what each job does, so ops know what they
change or switch off: the schedule's description, else the task's own docstring."""

from __future__ import annotations

from functools import cache

from celery import current_app
from django.contrib import admin
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask


class ScheduleAdmin(PeriodicTaskAdmin):
    list_display = ("name", "enabled", "scheduler", "what_it_does", "last_run_at", "one_off")

    @admin.display(description="what it does")
    def what_it_does(self, obj: PeriodicTask) -> str:
        # Returned as plain text: the admin escapes it, so a description typed in the admin
        # shows as written, never as markup.
        if obj.description.strip():
            return obj.description.strip()
        return task_summary(obj.task) or obj.task


@cache
def task_summary(name: str) -> str:
    """The first paragraph of a registered task's docstring, on one line ("" when unknown)."""
    # The web process imports no tasks module on its own; this loads them (once) as a worker does.
    current_app.loader.import_default_modules()
    task = current_app.tasks.get(name)
    doc = (task.__doc__ or "").strip() if task is not None else ""
    return " ".join(doc.split("\n\n")[0].split())


def schedules_admin_register(site: admin.AdminSite) -> None:
    """In place of django-celery-beat's own registration (the admin loads apps' admins first)."""
    if site.is_registered(PeriodicTask):
        site.unregister(PeriodicTask)
    site.register(PeriodicTask, ScheduleAdmin)
