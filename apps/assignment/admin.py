"""Agents in the admin: ops edit every agent and their queue priorities; an agent edits only their
own presence. The assignment board (backlog, oldest wait, agents' presence and load, recent
decisions; refreshes itself) hangs off the agents' pages, for ops. Offers are listed for all
staff; an agent answers their own pending offers there and asks for their next case."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from apps.assignment import services
from apps.assignment.board import assignment_board
from apps.assignment.models import Agent, AgentQueue, Offer, OfferState
from apps.core.errors import ApplicationError

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
        if not request.user.has_perm("assignment.see_assignment_board"):
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


class AgentQueueInline(admin.TabularInline):
    model = AgentQueue
    extra = 0
    verbose_name = "queue worked"
    verbose_name_plural = "queues worked (priority 1 first, then 2 once no first-priority agent can)"


AgentAdmin.inlines = [AgentQueueInline]


@admin.register(AgentQueue)
class AgentQueueAdmin(admin.ModelAdmin):
    list_display = ["agent", "queue", "priority"]
    list_editable = ["priority"]
    list_filter = ["priority", "queue"]
    list_select_related = ["agent", "queue"]
    search_fields = ["agent__display_name", "queue__slug", "queue__name"]
    autocomplete_fields = ["agent"]


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "agent", "state", "weight", "created_at", "expires_at", "responded_at"]
    list_filter = ["state", "case__queue"]
    list_select_related = ["case", "agent"]
    search_fields = ["agent__display_name", "case__subject", "=case__id"]
    date_hierarchy = "created_at"
    change_list_template = "admin/assignment/offer/change_list.html"
    change_form_template = "admin/assignment/offer/change_form.html"

    # The engine, the agents' answers and the expiry job write offers; nobody edits them by hand.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:offer_id>/accept/", view(self.answer_view), {"answer": "accept"},
                 name="assignment_offer_accept"),
            path("<int:offer_id>/decline/", view(self.answer_view), {"answer": "decline"},
                 name="assignment_offer_decline"),
            path("next-case/", view(self.next_case_view), name="assignment_offer_next_case"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        agent = Agent.objects.filter(user_id=request.user.pk).first()
        mine = list(Offer.objects.filter(agent=agent, state=OfferState.PENDING, expires_at__gt=timezone.now())
                    .select_related("case").order_by("expires_at")) if agent else []
        return super().changelist_view(request, {**(extra_context or {}), "agent": agent, "my_offers": mine})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        offer = Offer.objects.filter(pk=object_id if str(object_id).isdigit() else None).first()
        answerable = (offer is not None and offer.state == OfferState.PENDING
                      and offer.agent.user_id == request.user.pk)
        return super().change_view(request, object_id, form_url,
                                   {**(extra_context or {}), "answerable": answerable})

    def answer_view(self, request, offer_id: int, answer: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        service = services.offer_accept if answer == "accept" else services.offer_decline
        try:
            offer = service(offer_id=offer_id, user=request.user)
        except ApplicationError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(reverse("admin:assignment_offer_changelist"))
        if answer == "accept":
            messages.success(request, "The case is yours.")
            return HttpResponseRedirect(reverse("admin:cases_case_change", args=[offer.case_id]))
        messages.info(request, "Declined: the case goes to someone else.")
        return HttpResponseRedirect(reverse("admin:assignment_offer_changelist"))

    def next_case_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            case = services.case_next_for_agent(user=request.user)
        except ApplicationError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(reverse("admin:assignment_offer_changelist"))
        if case is None:
            messages.info(request, "Nothing waiting fits you right now.")
            return HttpResponseRedirect(reverse("admin:assignment_offer_changelist"))
        messages.success(request, "Your next case.")
        return HttpResponseRedirect(reverse("admin:cases_case_change", args=[case.pk]))
