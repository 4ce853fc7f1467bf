"""Admin of health specs (edited as YAML/JSON text, validated by the one admission service) and
the health dashboard (every spec and check, last five results, a trend; refreshes itself)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from apps.core.errors import ApplicationError
from apps.core.scheduling import task_send_each_on_commit
from apps.health import services, tasks
from apps.health.models import CheckResult, HealthSpec
from apps.health.selectors import (
    health_check_status,
    health_dashboard,
    health_spec_rollup_annotations,
    health_spec_status_from_counts,
)

DASHBOARD_REFRESH_S = 5


class HealthSpecForm(forms.ModelForm):
    source = forms.CharField(
        label="Document", widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "class": "vLargeTextField",
                                                       "style": "font-family: monospace"}),
        help_text="YAML or JSON: a `checks` list of {name, type, interval, timeout, grace_period, params}.",
    )

    class Meta:
        model = HealthSpec
        fields = ["name", "source", "enabled"]

    def clean(self):
        cleaned = super().clean()
        name = cleaned.get("name") or (self.instance.name if self.instance.pk else "")
        if "source" not in cleaned or not name:
            return cleaned
        try:
            services.health_spec_ensure_editable(spec=self.instance if self.instance.pk else None,
                                                 document=cleaned["source"])
        except ApplicationError as exc:
            self.add_error("source", exc.message)
            return cleaned
        try:
            services.health_spec_validate(name=name, document=cleaned["source"])
        except ApplicationError as exc:
            for key, msgs in exc.errors.items():
                field = "name" if key == "name" else "source"
                for msg in msgs:
                    self.add_error(field, msg if key in ("name", "document") else f"{key}: {msg}")
        return cleaned


@admin.register(HealthSpec)
class HealthSpecAdmin(admin.ModelAdmin):
    form = HealthSpecForm
    list_display = ["name", "status_badge", "check_count", "enabled", "managed_by", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["name"]
    actions = ["run_now", "enable", "disable"]
    change_list_template = "admin/health/healthspec/change_list.html"

    def get_readonly_fields(self, request, obj=None):
        # The name is the spec's identity (files and the gate refer to it): fixed once created.
        return ["name", "managed_by", "checks_overview"] if obj else ["managed_by"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**health_spec_rollup_annotations())

    @admin.display(description="checks", ordering="n_checks")
    def check_count(self, obj) -> int:
        return obj.n_checks

    @admin.display(description="status")
    def status_badge(self, obj) -> str:
        status = health_spec_status_from_counts(obj)
        colour = {"failure": "#c62828", "success": "#2e7d32", "stale": "#ef6c00"}.get(status, "#757575")
        return format_html('<strong class="health-status health-{}" style="color: {}">{}</strong>',
                           status, colour, status)

    def save_model(self, request, obj, form, change):
        spec, _ = services.health_spec_apply(name=obj.name, document=form.cleaned_data["source"],
                                             enabled=form.cleaned_data.get("enabled", True))
        obj.pk, obj.document = spec.pk, spec.document

    @admin.display(description="checks")
    def checks_overview(self, obj) -> str:
        # Checks are derived from the document by the service, so they are shown, never edited here.
        rows = format_html_join(
            # Numbers formatted first: format_html escapes its arguments into text, which "{:g}" refuses.
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((c.name, c.type, f"{c.interval_s:g}s / {c.timeout_s:g}s", health_check_status(c),
              c.last_run_at.strftime("%H:%M:%S") if c.last_run_at else "never")
             for c in obj.checks.order_by("name")),
        )
        return format_html("<table><tr><th>name</th><th>type</th><th>interval / timeout</th><th>status</th>"
                           "<th>last run</th></tr>{}</table>", rows)

    def has_delete_permission(self, request, obj=None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        if not allowed or obj is None:
            return allowed
        # Asked per spec by the delete view and by bulk delete (which then deletes none of them).
        try:
            services.health_spec_ensure_editable(spec=obj, document=None)
        except ApplicationError:
            return False
        return True

    def delete_model(self, request, obj):
        services.health_spec_delete(spec=obj)

    def delete_queryset(self, request, queryset):
        for spec in queryset:
            services.health_spec_delete(spec=spec)

    @admin.action(description="Run the checks now", permissions=["change"])
    def run_now(self, request, queryset):
        ids = list(queryset.values_list("id", flat=True))
        task_send_each_on_commit(tasks.health_spec_run, [(spec_id,) for spec_id in ids])
        messages.success(request, f"Queued a run of {len(ids)} spec(s).")

    @admin.action(description="Enable", permissions=["change"])
    def enable(self, request, queryset):
        for spec in queryset:
            services.health_spec_set_enabled(spec=spec, enabled=True)

    @admin.action(description="Disable", permissions=["change"])
    def disable(self, request, queryset):
        for spec in queryset:
            services.health_spec_set_enabled(spec=spec, enabled=False)

    def get_urls(self):
        return [
            path("dashboard/", self.admin_site.admin_view(self.dashboard_view), name="health_dashboard"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request):
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            **health_dashboard(),
            "title": "Health dashboard",
            "opts": self.model._meta,
            "refresh_ms": DASHBOARD_REFRESH_S * 1000,
            "dashboard_url": reverse("admin:health_dashboard"),
        }
        template = ("admin/health/_dashboard_body.html" if request.GET.get("partial")
                    else "admin/health/dashboard.html")
        return TemplateResponse(request, template, context)


@admin.register(CheckResult)
class CheckResultAdmin(admin.ModelAdmin):
    list_display = ["health_check", "status", "duration_ms", "in_grace", "created_at"]
    list_filter = ["status"]
    list_select_related = ["health_check__spec"]
    readonly_fields = ["health_check", "status", "duration_ms", "message", "in_grace", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
