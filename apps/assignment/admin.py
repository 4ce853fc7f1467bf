from django.contrib import admin

from apps.assignment.models import Agent


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["display_name", "user", "presence", "capacity", "presence_changed_at"]
    list_filter = ["presence"]
    list_select_related = ["user"]
    search_fields = ["display_name", "user__username", "skills"]
    raw_id_fields = ["user"]
