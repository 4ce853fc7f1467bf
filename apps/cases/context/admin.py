"""Admin of the context cache: ops look at cached records, refresh chosen ones now, or tag a whole
type stale ("bust"), after which each record is fetched again on its next read."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.timesince import timesince

from apps.cases.context import services
from apps.cases.context.models import ContextRecord, ContextType


class BustTypeForm(forms.Form):
    type = forms.ChoiceField(choices=ContextType.choices)


@admin.register(ContextRecord)
class ContextRecordAdmin(admin.ModelAdmin):
    list_display = ("type", "key", "stale", "fetched_at", "age")
    list_filter = ("type", "stale")
    search_fields = ("key",)
    ordering = ("type", "key")
    readonly_fields = ("type", "key", "data", "data_hash", "fetched_at", "stale", "generation")
    actions = ["refresh_now", "mark_stale"]
    change_list_template = "admin/context/contextrecord/change_list.html"

    @admin.display(description="age")
    def age(self, record: ContextRecord) -> str:
        return timesince(record.fetched_at, timezone.now())

    def has_add_permission(self, request) -> bool:
        return False  # records come from their outside systems only

    def has_change_permission(self, request, obj=None) -> bool:
        # The change page is read-only (data is the outside system's); the permission still
        # gates the refresh and bust actions.
        return obj is None and super().has_change_permission(request, obj)

    def get_urls(self):
        bust = self.admin_site.admin_view(self.bust_type_view)
        return [path("bust/", bust, name="context_contextrecord_bust"), *super().get_urls()]

    def _may_refresh(self, request) -> bool:
        return super().has_change_permission(request)

    @admin.action(description="Refresh selected records now", permissions=["refresh"])
    def refresh_now(self, request, queryset):
        counts = services.context_refresh(records=list(queryset.order_by("type", "key")[:200]))
        level = messages.WARNING if counts["failed"] else messages.SUCCESS
        self.message_user(request, f"{counts['refreshed']} refreshed, {counts['failed']} could not be "
                                   "refreshed (their cached copy is kept).", level)

    @admin.action(description="Mark selected records stale (fetched again on next read)",
                  permissions=["refresh"])
    def mark_stale(self, request, queryset):
        by_type: dict[str, list[str]] = {}
        for type, key in queryset.values_list("type", "key"):
            by_type.setdefault(type, []).append(key)
        tagged = sum(services.context_mark_stale(type=t, keys=keys) for t, keys in by_type.items())
        self.message_user(request, f"{tagged} records marked stale.", messages.SUCCESS)

    def has_refresh_permission(self, request) -> bool:
        return self._may_refresh(request)

    def bust_type_view(self, request):
        if not self._may_refresh(request):
            raise PermissionDenied
        form = BustTypeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            type = form.cleaned_data["type"]
            tagged = services.context_bust_type(type=type)
            self.message_user(request, f"Cache busted: {tagged} {ContextType(type).label} records marked "
                                       "stale; each is fetched again on its next read.", messages.SUCCESS)
            return redirect(reverse("admin:context_contextrecord_changelist"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Bust the cache of a whole type"}
        return TemplateResponse(request, "admin/context/contextrecord/bust.html", context)
