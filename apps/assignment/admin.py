"""Agents in the admin: ops edit every agent and their queue priorities; an agent edits only their
own presence. The assignment board (backlog, oldest wait, agents' presence and load, recent
decisions; refreshes itself) hangs off the agents' pages, for ops. Offers are listed for all
staff; an agent answers their own pending offers there and asks for their next case. Ops add
agents from the agents' page: one by one (invite) or from a CSV file (import)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from apps.assignment import services
from apps.assignment.board import assignment_board
from apps.assignment.models import Agent, AgentPresenceChange, AgentQueue, Offer, OfferState
from apps.assignment.services import onboarding
from apps.core.admin_site import ReadOnlyAdmin
from apps.core.errors import ApplicationError
from apps.core.roles import OPS

BOARD_REFRESH_S = 5


class AgentForm(forms.ModelForm):
    channel_weights = forms.CharField(
        required=False, max_length=500,
        help_text="Units a case of a channel takes from this agent, over its queue's weight, e.g. chat:3;"
                  "email:1. Empty: every queue's own weights.")

    class Meta:
        model = Agent
        fields = ["user", "display_name", "skills", "capacity", "channel_weights", "presence",
                  "presence_changed_at", "heartbeat_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and "channel_weights" in self.fields:
            weights = self.instance.channel_weights or {}
            self.initial["channel_weights"] = services.channel_weights_text(weights)

    def clean_channel_weights(self) -> dict[str, int]:
        weights, errors = services.channel_weights_parse(self.cleaned_data.get("channel_weights") or "")
        if errors:
            raise forms.ValidationError(errors)
        return weights


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ["display_name", "user", "presence", "capacity", "presence_changed_at", "heartbeat_at"]
    list_filter = ["presence"]
    list_select_related = ["user"]
    search_fields = ["display_name", "user__username", "skills"]
    raw_id_fields = ["user"]
    change_list_template = "admin/assignment/agent/change_list_onboarding.html"

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
            path("import/", self.admin_site.admin_view(self.import_view), name="assignment_agent_import"),
            path("invite/", self.admin_site.admin_view(self.invite_view), name="assignment_agent_invite"),
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


    @staticmethod
    def _may_onboard(request) -> bool:
        user = request.user
        return user.has_perm("assignment.add_agent") and (
            user.is_superuser or user.groups.filter(name=OPS).exists())

    def _onboarding_context(self, request, title: str) -> dict:
        return {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta,
                "import_url": reverse("admin:assignment_agent_import"),
                "invite_url": reverse("admin:assignment_agent_invite")}

    def import_view(self, request):
        if not self._may_onboard(request):
            raise PermissionDenied
        form = AgentImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            try:
                report = services.agents_import_csv(
                    file=form.cleaned_data["file"], mode=form.cleaned_data["mode"], invited_by=request.user,
                    name=form.cleaned_data["file"].name, base_url=request.build_absolute_uri("/"))
            except ApplicationError as exc:
                form.add_error(None, str(exc))
        context = {**self._onboarding_context(request, "Import agents"), "form": form, "report": report,
                   "columns": onboarding.COLUMNS, "max_rows": onboarding.MAX_ROWS}
        return TemplateResponse(request, "admin/assignment/agent/import.html", context)

    def invite_view(self, request):
        if not self._may_onboard(request):
            raise PermissionDenied
        form = AgentInviteForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                row = services.agent_invite(**form.cleaned_data, invited_by=request.user,
                                            base_url=request.build_absolute_uri("/"))
            except ApplicationError as exc:
                for column, errors in exc.errors.items():
                    for error in errors:
                        form.add_error(column if column in form.fields else None, error)
                if not exc.errors:
                    form.add_error(None, str(exc))
            else:
                sent = " An invitation to set a password is on its way." if row.invited else ""
                messages.success(request, f"{row.name} ({row.email}): {row.outcome}.{sent}")
                return HttpResponseRedirect(reverse("admin:assignment_agent_invite"))
        context = {**self._onboarding_context(request, "Add an agent"), "form": form}
        return TemplateResponse(request, "admin/assignment/agent/invite.html", context)


class AgentImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text=f"UTF-8, at most {onboarding.MAX_ROWS} agents.")
    mode = forms.ChoiceField(
        widget=forms.RadioSelect, initial=onboarding.ALL_OR_NOTHING,
        choices=[(onboarding.ALL_OR_NOTHING, "All or nothing: write nothing unless every row is valid"),
                 (onboarding.EACH_ROW, "Each row stands alone: write the valid rows, report the others")])


class AgentInviteForm(forms.Form):
    name = forms.CharField(max_length=onboarding.NAME_MAX)
    email = forms.EmailField(max_length=onboarding.EMAIL_MAX)
    queues = forms.CharField(help_text="Queue slugs with a priority (1 first), e.g. refunds:1;billing:2.")
    skills = forms.CharField(required=False, help_text="Separated by semicolons, e.g. english;refunds.")
    capacity = forms.IntegerField(required=False, min_value=onboarding.CAPACITY_MIN,
                                  max_value=onboarding.CAPACITY_MAX,
                                  help_text=f"Units at once; {onboarding.DEFAULT_CAPACITY} when empty.")
    channel_weights = forms.CharField(
        required=False, help_text="Units a case of a channel takes from this agent, over its queue's "
                                  "weight, e.g. chat:3. Empty: every queue's own weights.")


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


@admin.register(AgentPresenceChange)
class AgentPresenceChangeAdmin(ReadOnlyAdmin):
    """The presence history the routing what-if replays: written by the database, read here."""

    list_display = ["changed_at", "agent", "presence"]
    list_filter = ["presence"]
    list_select_related = ["agent"]
    search_fields = ["agent__display_name"]
    date_hierarchy = "changed_at"


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdmin):
    """Read-only: the engine, the agents' answers and the expiry job write offers, nobody by hand."""

    list_display = ["id", "case", "agent", "state", "weight", "created_at", "expires_at", "responded_at"]
    list_filter = ["state", "case__queue"]
    list_select_related = ["case", "agent"]
    search_fields = ["agent__display_name", "case__subject", "=case__id"]
    date_hierarchy = "created_at"
    change_list_template = "admin/assignment/offer/change_list.html"
    change_form_template = "admin/assignment/offer/change_form.html"

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
