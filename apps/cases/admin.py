"""The agent/ops workspace (for now): cases with filters (also on dynamic fields, GIN-backed),
search, bulk actions with an intermediate form, the timeline inline, the email thread with the
agent's reply (admin_thread.py) and dynamic fields rendered from the queue's JSON Schema; queue
configuration lives in admin_config.py. Every write goes through apps.cases.services."""

from __future__ import annotations

import json
import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from apps.assignment.board import case_decision_explained
from apps.cases import selectors, services
from apps.cases.admin_config import QueueConfigAdmin, QueueConfigForm  # noqa: F401  (registers it)
from apps.cases.admin_thread import CaseThreadAdminMixin
from apps.cases.forms import (
    PREFIX,
    AssignForm,
    LegacyTransferForm,
    StatusForm,
    TransferForm,
    form_to_fields,
    schema_form_fields,
)
from apps.cases.models import (
    CORE_EDITABLE,
    Case,
    CaseEvent,
    CaseStats,
    Location,
    Queue,
    QueueConfig,
    SignalOutcome,
    Source,
    Status,
)
from apps.core.errors import ApplicationError
from apps.core.input import JSONDocumentError, json_document_load

TIMESTAMPS = ("created_at", "updated_at", "first_assigned_at", "first_response_at", "resolved_at")


class EstimatedCountPaginator(Paginator):
    """The unfiltered changelist counts a big table from the planner's estimate (`reltuples`):
    an exact COUNT(*) over millions of cases takes longer than the page itself."""

    EXACT_BELOW = 100_000

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if query is not None and not query.where:
            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                               [self.object_list.model._meta.db_table])
                row = cursor.fetchone()
            if row and row[0] >= self.EXACT_BELOW:
                return int(row[0])
        return super().count


class DynamicFieldFilter(admin.SimpleListFilter):
    """`?df=<name>:<json value>` -> `fields @> {name: value}` (GIN `jsonb_path_ops`).

    The sidebar offers the enum and boolean values of active queue schemas; any other value can
    be typed into the URL, e.g. `?df=order_id:"A-100"` or `?df=items_missing:2`.
    """

    title = "dynamic field"
    parameter_name = "df"

    def has_output(self) -> bool:
        # A typed ?df= applies even when no active schema has enum or boolean values to offer.
        return True

    def lookups(self, request, model_admin):
        choices: dict[str, str] = {}
        for schema in selectors.queue_configs_active().values_list("fields_schema", flat=True):
            for name, prop in ((schema or {}).get("properties") or {}).items():
                values = prop.get("enum") or ([True, False] if prop.get("type") == "boolean" else [])
                for value in values:
                    choices[f"{name}:{json.dumps(value)}"] = f"{name} = {value}"
        return sorted(choices.items(), key=lambda kv: kv[1])

    def queryset(self, request, queryset):
        if not self.value() or ":" not in self.value():
            return queryset
        name, raw = self.value().split(":", 1)
        try:
            value = json_document_load(raw)
        except JSONDocumentError as exc:
            if exc.code == "parse_error":
                value = raw  # a bare string
            else:  # 1e999, "\u0000": no stored field holds such a value, so none matches
                problems = "; ".join(
                    " ".join(found) if path == "non_field_errors" else f"{path}: {' '.join(found)}"
                    for path, found in exc.errors.items())
                messages.warning(request, f"No case matches the dynamic field filter {name}: {problems}")
                return queryset.none()
        return queryset.filter(fields__contains={name: value})


class CaseEventInline(admin.TabularInline):
    """The timeline: read-only, oldest first."""

    model = CaseEvent
    fields = ("created_at", "kind", "actor", "summary")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("id",)
    verbose_name = "timeline event"
    verbose_name_plural = "timeline"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="what")
    def summary(self, event: CaseEvent) -> str:
        data = event.data
        if event.kind == "field_changed":
            return f"{data.get('field')}: {data.get('old')!r} → {data.get('new')!r}"
        if event.kind in ("status_changed", "transferred"):
            return f"{data.get('from')} → {data.get('to')}"
        if event.kind == "assigned":
            return f"→ {data.get('agent') or 'unassigned'}"
        if event.kind in ("note", "message"):
            return data.get("body") or data.get("preview", "")
        if event.kind == "legacy_transfer":
            return f"{data.get('direction')} {data.get('legacy_ref') or ''}".strip()
        if event.kind == "created":
            return f"in {data.get('queue')} ({data.get('source')})"
        return json.dumps(data)


class CaseAdminForm(forms.ModelForm):
    """Core fields plus one form field per dynamic field; validated by `case_fields_validate`."""

    config: QueueConfig | None = None
    schema: dict = {}

    class Meta:
        model = Case
        fields = ["queue", *CORE_EDITABLE]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            for name in (self.schema.get("properties") or {}):
                key = PREFIX + name
                if key in self.fields and name in self.instance.fields:
                    self.initial[key] = self.instance.fields[name]
        self.dynamic_fields: dict = {}

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk and self.instance.location == Location.LEGACY:
            raise ValidationError("The case is being worked in the legacy CRM: transfer it back first "
                                  "(action \"Transfer back from legacy CRM\").", code="in_legacy")
        config = self.config
        if not self.instance.pk and cleaned.get("queue"):
            config = selectors.queue_config_active(cleaned["queue"])
        if config is None:
            raise ValidationError("The queue has no active configuration.")
        declared = set(self.schema.get("properties") or {})
        kept = {k: v for k, v in (self.instance.fields or {}).items() if k not in declared}
        fields = {**kept, **form_to_fields(cleaned, self.schema)}
        try:
            services.case_fields_validate(config=config, fields=fields)
        except ApplicationError as exc:
            for key, msgs in exc.errors.items():
                name = PREFIX + key.removeprefix("fields.")
                self.add_error(name if name in self.fields else None, msgs)
        self.dynamic_fields = fields
        return cleaned


@admin.register(Case)
class CaseAdmin(CaseThreadAdminMixin, admin.ModelAdmin):
    form = CaseAdminForm
    list_display = ("short_id", "subject", "queue", "status", "priority", "channel", "assigned_agent",
                    "merchant_ref", "location", "created_at")
    list_display_links = ("short_id", "subject")
    list_select_related = ("queue", "assigned_agent")
    list_filter = ("queue", "status", "priority", "channel", "location", "source", "assigned_agent",
                   DynamicFieldFilter)
    search_fields = ("subject", "merchant_ref", "customer_ref", "delivery_ref", "legacy_id")
    list_per_page = 50
    show_full_result_count = False  # one COUNT less on big tables
    paginator = EstimatedCountPaginator
    inlines = [CaseEventInline]
    actions = ["assign_to_agent", "change_status", "transfer_to_queue", "transfer_to_legacy",
               "transfer_back_from_legacy"]

    @admin.display(description="case", ordering="id")
    def short_id(self, case: Case) -> str:
        return str(case.pk)[:8]

    # Forms: dynamic fields come from the queue's active config --------------------------------

    def _config(self, request, obj) -> QueueConfig | None:
        cache = request.__dict__.setdefault("_case_configs", {})
        queue_id = obj.queue_id if obj else request.GET.get("queue") or request.POST.get("queue")
        try:
            queue_id = int(queue_id)
        except (TypeError, ValueError):
            return None
        if queue_id not in cache:
            cache[queue_id] = selectors.queue_config_active(queue_id)
        return cache[queue_id]

    def get_fieldsets(self, request, obj=None):
        config = self._config(request, obj)
        dynamic = list(schema_form_fields(config.fields_schema if config else {}))
        if obj is None:
            sets = [(None, {"fields": ("queue", *CORE_EDITABLE)})]
        else:
            sets = [(None, {"fields": ("id", "queue", "status", "assigned_agent", "location", "legacy_id",
                                       "source", *CORE_EDITABLE)})]
        if dynamic:
            sets.append(("Queue fields", {"fields": dynamic}))
        if obj is not None:
            sets.append(("Workflow", {"fields": ("transition_to", "transition_note")}))
            sets.append(("Routing decision", {"fields": ("routing_decision_panel",)}))
            sets.append(("Timestamps", {"fields": TIMESTAMPS, "classes": ("collapse",)}))
        return sets

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("id", "queue", "status", "assigned_agent", "location", "legacy_id", "source", *TIMESTAMPS,
                "routing_decision_panel")

    @admin.display(description="latest decision")
    def routing_decision_panel(self, case: Case) -> str:
        # Rendered by the template engine, so every name and note in it is escaped.
        return render_to_string("admin/assignment/_decision.html", {"d": case_decision_explained(case)})

    def get_form(self, request, obj=None, change=False, **kwargs):
        config = self._config(request, obj)
        schema = config.fields_schema if config else {}
        attrs: dict = {**schema_form_fields(schema), "config": config, "schema": schema}
        if obj is not None:
            allowed = config.transitions.get(obj.status, []) if config else []
            queue = config.queue.slug if config else obj.queue_id
            attrs["transition_to"] = forms.ChoiceField(
                required=False, label="Move to status",
                choices=[("", "(keep current status)")] + [(s, Status(s).label) for s in allowed],
                # A stale form (someone moved the case meanwhile) gets the transition table's answer.
                error_messages={"invalid_choice": (
                    f"A case in queue '{queue}' cannot move from '{obj.status}' to '%(value)s'. "
                    f"Allowed from '{obj.status}': {', '.join(allowed) or 'none'}.")})
            attrs["transition_note"] = forms.CharField(required=False, label="Note",
                                                       widget=forms.Textarea(attrs={"rows": 2}))
        form = type("CaseDynamicForm", (CaseAdminForm,), attrs)
        return super().get_form(request, obj, change=change, form=form, **kwargs)

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied  # the queue picker below answers before Django's own check would
        if request.method == "GET" and "queue" not in request.GET:
            # Dynamic fields depend on the queue: pick it first.
            queues = Queue.objects.filter(is_active=True, configs__is_active=True).order_by("name")
            return TemplateResponse(request, "admin/cases/case/pick_queue.html", {
                **self.admin_site.each_context(request), "title": "New case: choose a queue",
                "queues": queues, "opts": self.model._meta,
            })
        return super().add_view(request, form_url, extra_context)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The form checks what it can; a rule that only fails at write time (a concurrent change)
        # rolls the whole save back and comes back as a message instead of a server error.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ApplicationError as exc:
            detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())
            self.message_user(request, f"Nothing was saved. {exc.message} {detail}".strip(), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        if not change:
            case = services.case_create(queue=obj.queue, fields=form.dynamic_fields, actor=request.user,
                                        source=Source.AGENT, **{k: getattr(obj, k) for k in CORE_EDITABLE})
            obj.pk, obj.status, obj._state.adding = case.pk, case.status, False
            return
        core = {k: form.cleaned_data[k] for k in CORE_EDITABLE if k in form.changed_data}
        patch = {**form.dynamic_fields, **{k: None for k in obj.fields if k not in form.dynamic_fields}}
        services.case_update(case=obj, actor=request.user, fields=patch, **core)
        if form.cleaned_data.get("transition_to"):
            services.case_transition(case=obj, to_status=form.cleaned_data["transition_to"],
                                     note=form.cleaned_data.get("transition_note", ""), actor=request.user)
        elif form.cleaned_data.get("transition_note"):
            services.case_add_note(case=obj, body=form.cleaned_data["transition_note"], actor=request.user)

    def has_delete_permission(self, request, obj=None):
        return False  # cases are an audit trail: close them instead

    def get_search_results(self, request, queryset, search_term):
        try:
            return queryset.filter(pk=uuid.UUID(search_term.strip())), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    # Bulk actions with an intermediate form page ------------------------------------------------

    def _bulk(self, request, queryset, *, form_class, title: str, operation):
        if "apply" in request.POST:
            form = form_class(request.POST)
            if form.is_valid():
                result = services.cases_bulk_apply(case_ids=list(queryset.values_list("pk", flat=True)),
                                                   operation=operation(form.cleaned_data, request.user))
                self.message_user(request, f"{title}: {result.done} case(s) done.", messages.SUCCESS)
                for case_id, error in result.errors.items():
                    self.message_user(request, f"{title}: case {case_id[:8]} skipped: {error}",
                                      messages.ERROR)
                return None
        else:
            form = form_class()
        return TemplateResponse(request, "admin/cases/case/bulk_action.html", {
            **self.admin_site.each_context(request), "title": title, "form": form,
            "queryset": queryset[:100], "count": queryset.count(), "opts": self.model._meta,
            "action": request.POST.get("action"), "select_across": request.POST.get("select_across", "0"),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        })

    @admin.action(description="Assign to agent…", permissions=["change"])
    def assign_to_agent(self, request, queryset):
        return self._bulk(request, queryset, form_class=AssignForm, title="Assign to agent",
                          operation=lambda data, user: lambda case: services.case_assign(
                              case=case, agent=data["agent"], actor=user))

    @admin.action(description="Change status…", permissions=["change"])
    def change_status(self, request, queryset):
        return self._bulk(request, queryset, form_class=StatusForm, title="Change status",
                          operation=lambda data, user: lambda case: services.case_transition(
                              case=case, to_status=data["status"], note=data["note"], actor=user))

    @admin.action(description="Transfer to queue…", permissions=["change"])
    def transfer_to_queue(self, request, queryset):
        return self._bulk(request, queryset, form_class=TransferForm, title="Transfer to queue",
                          operation=lambda data, user: lambda case: services.case_transfer(
                              case=case, queue=data["queue"], reason=data["reason"], actor=user))

    @admin.action(description="Transfer to legacy CRM…", permissions=["change"])
    def transfer_to_legacy(self, request, queryset):
        return self._bulk(request, queryset, form_class=LegacyTransferForm, title="Transfer to legacy CRM",
                          operation=lambda data, user: lambda case: services.case_legacy_transfer_out(
                              case=case, legacy_ref=data["legacy_ref"], reason=data["reason"], actor=user))

    @admin.action(description="Transfer back from legacy CRM", permissions=["change"])
    def transfer_back_from_legacy(self, request, queryset):
        result = services.cases_bulk_apply(
            case_ids=list(queryset.filter(location=Location.LEGACY).values_list("pk", flat=True)),
            operation=lambda case: services.case_legacy_transfer_back(case=case, actor=request.user))
        self.message_user(request, f"{result.done} case(s) back in Casehub.", messages.SUCCESS)


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_active", "active_version", "edit_config")
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request):
        active = QueueConfig.objects.filter(queue=OuterRef("pk"), is_active=True).values("version")[:1]
        return super().get_queryset(request).annotate(_active_version=Subquery(active))

    @admin.display(description="active config version")
    def active_version(self, queue: Queue):
        return queue._active_version

    @admin.display(description="configuration")
    def edit_config(self, queue: Queue):
        url = reverse("admin:cases_queueconfig_editor", args=[queue.pk])
        return format_html('<a href="{}">edit</a>', url)


@admin.register(SignalOutcome)
class SignalOutcomeAdmin(admin.ModelAdmin):
    list_display = ("delivery_ref", "signal_type", "queue", "experiment", "group", "case", "received_count",
                    "created_at")
    list_select_related = ("queue", "case")
    list_filter = ("signal_type", "experiment", "group", "queue")
    search_fields = ("delivery_ref",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the record that keeps a retried signal from opening a second case


@admin.register(CaseStats)
class CaseStatsAdmin(admin.ModelAdmin):
    list_display = ("case", "queue", "outbound_messages", "reopen_count", "first_response_at", "resolved_at",
                    "handle_seconds", "first_contact_resolution")
    list_select_related = ("case", "queue")
    list_filter = ("queue", "first_contact_resolution")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # folded from the change feed: a deleted row would come back with partial counts


from apps.cases import admin_metrics  # noqa: E402, F401  (re-registers CaseStats with the metrics dashboard)
