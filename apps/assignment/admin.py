"""Agents in the admin: ops edit every agent; an agent edits only their own presence. The
assignment board (backlog, oldest wait, agents' presence and load, recent decisions; refreshes
itself) hangs off the agents' pages."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from apps.assignment.board import assignment_board
from apps.assignment.models import Agent

BOARD_REFRESH_S = 5


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["display_name", "user", "presence", "capacity", "presence_changed_at", "heartbeat_at"]
    list_filter = ["presence"]
    list_select_related = ["user"]
    search_fields = ["display_name", "user__username", "skills"]
    raw_id_fields = ["user"]
    change_list_template = "admin/assignment/agent/change_list.html"

    @staticmethod
    def _changes_all(request) -> bool:
        return request.user.has_perm("assignment.change_agent")

    @staticmethod
    def _changes_own_presence(request, obj) -> bool:
        return (request.user.has_perm("assignment.change_own_presence")
                and (obj is None or obj.user_id == request.user.pk))

    def has_change_permission(self, request, obj=None) -> bool:
        # With obj None Django asks "may they change some agent?" (links, list actions); the
        # change view asks again for the agent it opens, and only their own passes.
        return self._changes_all(request) or self._changes_own_presence(request, obj)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not self._changes_all(request):
            opts = self.model._meta
            return [f.name for f in [*opts.fields, *opts.many_to_many]
                    if f.editable and not f.primary_key and f.name != "presence"]
        return super().get_readonly_fields(request, obj)

    def get_actions(self, request):
        # Bulk delete and any bulk change would reach other agents' rows.
        return super().get_actions(request) if self._changes_all(request) else {}

    def save_model(self, request, obj, form, change):
        if "presence" in form.changed_data:
            obj.presence_changed_at = timezone.now()
        super().save_model(request, obj, form, change)

    def get_urls(self):
        return [
            path("board/", self.admin_site.admin_view(self.board_view), name="assignment_board"),
            *super().get_urls(),
        ]

    def board_view(self, request):
        # Whoever may see the agents sees how they are loaded and what the engine decided.
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            **assignment_board(),
            "title": "Assignment board",
            "opts": self.model._meta,
            "refresh_ms": BOARD_REFRESH_S * 1000,
            "board_url": reverse("admin:assignment_board"),
        }
        template = ("admin/assignment/_board_body.html" if request.GET.get("partial")
                    else "admin/assignment/board.html")
        return TemplateResponse(request, template, context)
