"""Queue configuration in admin: the form editor (check, dry run with the routing what-if, drafts,
publish), version history, field-level diffs, rollback and field rename. Every write goes through
apps.cases.services; editors save drafts, only ops (cases.publish_queueconfig) publish."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from apps.assignment.whatif import routing_what_if
from apps.cases import selectors, services
from apps.cases.config_forms import EditorForm, Sections, rows
from apps.cases.models import Case, ConfigState, Queue, QueueConfig, Status
from apps.core.errors import ApplicationError, Conflict
from apps.core.input import JSONDocumentError, json_document_load

PUBLISH = "cases.publish_queueconfig"
# What the editor starts from for a queue without any version yet.
NEW_QUEUE_DOCUMENT = {"fields_schema": {"type": "object", "properties": {}}, "initial_status": Status.NEW,
                      "transitions": {Status.NEW: [Status.RESOLVED], Status.RESOLVED: []},
                      "sla": {}, "routing": {}, "targeting": {}}
TEMPLATES = "admin/cases/queueconfig/"


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def _messages(by_field: dict[str, list[str]]) -> list[str]:
    return [message for messages in by_field.values() for message in messages]


def _flat(errors: dict[str, list[str]]) -> list[str]:
    return [f"{path}: {message}" for path, msgs in errors.items() for message in msgs]


class QueueConfigForm(forms.ModelForm):
    """The expert's page (add view): the document as raw JSON, one text area per key."""

    class Meta:
        model = QueueConfig
        fields = ["queue", "initial_status", "fields_schema", "transitions", "sla", "routing", "targeting"]
        widgets = {name: forms.Textarea(attrs={"rows": 8, "cols": 90, "style": "font-family: monospace"})
                   for name in ("fields_schema", "transitions", "sla", "routing", "targeting")}

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        document = {key: cleaned[key] for key in services.QUEUE_CONFIG_KEYS if cleaned.get(key) is not None}
        errors = services.queue_config_check(queue=cleaned.get("queue"), document=document).errors
        for key, msgs in errors.items():
            field = key.split(".")[0]
            self.add_error(field if field in self.fields else None, msgs)
        return cleaned


class RenameFieldForm(forms.Form):
    old = forms.ChoiceField(label="Field")
    new = forms.CharField(max_length=64, label="New name")
    comment = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args, names: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["old"].choices = [(name, name) for name in names]


@admin.register(QueueConfig)
class QueueConfigAdmin(admin.ModelAdmin):
    """Versions are immutable: "editing" saves a new version (prefilled from the active one), a
    draft, or published at once for users who may publish (cases.publish_queueconfig)."""

    form = QueueConfigForm
    list_display = ("queue", "version", "state", "is_active", "created_at", "created_by", "tools")
    list_select_related = ("queue", "created_by")
    list_filter = ("queue", "is_active")
    actions = ["rollback_version"]

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        # The active version validates the queue's cases: publish another first.
        return super().has_delete_permission(request, obj) and not (obj is not None and obj.is_active)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        active = selectors.queue_config_active(initial["queue"]) if initial.get("queue") else None
        if active:
            for name in ("initial_status", "fields_schema", "transitions", "sla", "routing", "targeting"):
                initial[name] = getattr(active, name)
        return initial

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        document = {key: data[key] for key in services.QUEUE_CONFIG_KEYS if data.get(key) is not None}
        config = services.queue_config_draft_save(queue=data["queue"], document=document, user=request.user)
        if request.user.has_perm(PUBLISH):
            config = services.queue_config_publish_draft(draft=config, user=request.user)
        obj.pk, obj.version, obj._state.adding = config.pk, config.version, False
        obj.is_active, obj.state = config.is_active, config.state

    def has_publish_permission(self, request):
        return request.user.has_perm(PUBLISH)

    @admin.action(description="Roll back to the selected version (published as a new version)",
                  permissions=["publish"])
    def rollback_version(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version.", messages.ERROR)
            return
        earlier = queryset.get()
        try:
            config = services.queue_config_rollback(config=earlier, user=request.user)
        except ApplicationError as exc:
            return self.message_user(request, exc.message, messages.ERROR)
        self.message_user(request, f"{config.queue.slug}: version {config.version} is active, "
                                   f"with the content of version {earlier.version}.")

    @admin.display(description="editor")
    def tools(self, config: QueueConfig):
        editor = reverse("admin:cases_queueconfig_editor", args=[config.queue_id])
        if config.state == ConfigState.DRAFT:
            editor += f"?draft={config.pk}"
        return format_html('<a href="{}">edit</a> · <a href="{}">history</a>', editor,
                           reverse("admin:cases_queueconfig_versions", args=[config.queue_id]))

    # Editor, history, diff, publish, rollback, rename ---------------------------------------

    def get_urls(self):
        def view(func):
            return self.admin_site.admin_view(func)

        return [
            path("queue/<int:queue_id>/editor/", view(self.editor_view), name="cases_queueconfig_editor"),
            path("queue/<int:queue_id>/versions/", view(self.versions_view),
                 name="cases_queueconfig_versions"),
            path("queue/<int:queue_id>/diff/", view(self.diff_view), name="cases_queueconfig_diff"),
            path("queue/<int:queue_id>/rename/", view(self.rename_view), name="cases_queueconfig_rename"),
            path("<int:pk>/publish/", view(self.publish_view), name="cases_queueconfig_publish"),
            path("<int:pk>/rollback/", view(self.rollback_view), name="cases_queueconfig_rollback"),
            *super().get_urls(),
        ]

    def _require(self, request, *, publish: bool = False) -> None:
        allowed = self.has_publish_permission(request) if publish else self.has_add_permission(request)
        if not allowed:
            raise PermissionDenied

    def _context(self, request, queue: Queue, title: str, **extra) -> dict:
        return {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title,
                "queue": queue, "can_publish": self.has_publish_permission(request), **extra}

    @staticmethod
    def _pk(value: Any) -> int | None:
        if value in (None, ""):
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise Http404("No such version.") from None
        if not 0 < number < 2**63:
            raise Http404("No such version.")
        return number

    def editor_view(self, request, queue_id: int):
        self._require(request)
        queue = get_object_or_404(Queue, pk=queue_id)
        draft_pk = self._pk(request.POST.get("draft") or request.GET.get("draft"))
        draft = None
        if draft_pk is not None:
            draft = get_object_or_404(QueueConfig.objects.select_related("based_on"), pk=draft_pk,
                                      queue=queue, state=ConfigState.DRAFT)
        active = selectors.queue_config_active(queue)
        base = draft or active
        base_document = services.queue_config_document(base) if base else NEW_QUEUE_DOCUMENT
        state = {"queue": queue, "draft": draft, "active": active, "mode": "form", "document": base_document,
                 "other_errors": {}, "other_warnings": {}}
        if request.method != "POST":
            state["meta"] = EditorForm(initial={"raw_json": _dump(base_document)})
            state["sections"] = Sections.from_document(base_document)
            return self._render_editor(request, state)

        action = request.POST.get("action", "check")
        mode = "json" if request.POST.get("mode") == "json" else "form"
        meta = EditorForm(request.POST)
        sections = Sections.from_post(request.POST) if mode == "form" else None
        state.update(meta=meta, mode=mode, sections=sections)
        document = self._document(meta, sections, mode, base_document)
        if document is None:
            if sections is None:
                state["sections"] = Sections.from_document(base_document)
            return self._render_editor(request, state)
        state["document"] = document

        if action in ("to_json", "to_form"):
            return self._switch(request, state, document, action)
        if mode == "json":
            # The other mode's inputs are refreshed from the document, never merged with it.
            state["sections"] = Sections.from_document(document)
        if action == "save":
            return self._save(request, state, document)
        if action == "publish":
            self._require(request, publish=True)
            return self._publish(request, state, document)
        report = services.queue_config_check(queue=queue, document=document)
        self._place(state, report.errors, report.warnings)
        state["checked"] = {"errors": len(report.errors), "warnings": len(report.warnings)}
        if action == "dry_run" and not services.queue_config_document_errors(document):
            state["dry_run"] = services.queue_config_dry_run(queue=queue, document=document)
            whatif = routing_what_if(queue=queue, routing=document.get("routing") or {},
                                     hours=meta.cleaned_data["hours"])
            state["whatif"] = whatif
            state["whatif_rows"] = _whatif_rows(whatif)
        return self._render_editor(request, state)

    @staticmethod
    def _document(meta: EditorForm, sections: Sections | None, mode: str, base: dict) -> dict | None:
        valid_meta = meta.is_valid()
        if mode == "form":
            valid = sections.is_valid()
            return sections.document(base) if valid and valid_meta else None
        if not valid_meta:
            return None
        try:
            document = json_document_load(meta.cleaned_data["raw_json"])
        except JSONDocumentError as exc:
            meta.add_error("raw_json", [exc.message, *_flat(exc.errors)])
            return None
        if not isinstance(document, dict):
            meta.add_error("raw_json", "The document must be a JSON object.")
            return None
        return document

    def _switch(self, request, state: dict, document: dict, action: str):
        meta = state["meta"]
        state["mode"] = "json" if action == "to_json" else "form"
        state["meta"] = EditorForm(initial={"raw_json": _dump(document), "hours": meta.cleaned_data["hours"],
                                            "comment": meta.cleaned_data["comment"]})
        state["sections"] = Sections.from_document(document)
        return self._render_editor(request, state)

    def _place(self, state: dict, errors: dict, warnings: dict) -> None:
        if state["mode"] == "form":
            sections = state["sections"]
            sections.place(errors, warnings)
            state["other_errors"], state["other_warnings"] = sections.other_errors, sections.other_warnings
        else:
            state["other_errors"], state["other_warnings"] = errors, warnings

    def _save(self, request, state: dict, document: dict):
        try:
            draft = services.queue_config_draft_save(
                queue=state["queue"], document=document, user=request.user,
                comment=state["meta"].cleaned_data["comment"], draft=state["draft"])
        except ApplicationError as exc:
            self._place(state, exc.errors, {})
            state["failure"] = exc.message
            return self._render_editor(request, state)
        self.message_user(request, f"Draft version {draft.version} saved.", messages.SUCCESS)
        url = reverse("admin:cases_queueconfig_editor", args=[state["queue"].pk])
        return HttpResponseRedirect(f"{url}?draft={draft.pk}")

    def _publish(self, request, state: dict, document: dict):
        comment = state["meta"].cleaned_data["comment"]
        try:
            draft = services.queue_config_draft_save(
                queue=state["queue"], document=document, user=request.user, comment=comment,
                draft=state["draft"])
        except ApplicationError as exc:
            self._place(state, exc.errors, {})
            state["failure"] = exc.message
            return self._render_editor(request, state)
        state["draft"] = draft
        try:
            config = services.queue_config_publish_draft(draft=draft, user=request.user, comment=comment,
                                                         rebase=request.POST.get("rebase") == "1")
        except Conflict as exc:
            state["failure"] = exc.message
            if exc.code == "rebase_needed":
                state["rebase_onto"] = selectors.queue_config_active(state["queue"])
            return self._render_editor(request, state)
        except ApplicationError as exc:
            self._place(state, exc.errors, {})
            state["failure"] = exc.message
            return self._render_editor(request, state)
        self.message_user(request, f"Version {config.version} published and active.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:cases_queueconfig_versions", args=[config.queue_id]))

    def _render_editor(self, request, state: dict):
        sections: Sections = state["sections"]
        title = f"{state['queue'].name}: " + (f"draft version {state['draft'].version}" if state["draft"]
                                               else "new draft")
        field_rows = [(f, _messages(getattr(f, "warnings", {}))) for f in sections.fields.forms]
        condition_rows = [(f, _messages(getattr(f, "warnings", {}))) for f in sections.conditions.forms]
        routing = sections.routing
        channel_names = [bf.name for bf in routing.channel_fields()]
        priority_names = [bf.name for bf in routing.priority_fields()]
        state.update(
            field_rows=field_rows, condition_rows=condition_rows,
            transition_warnings=_messages(getattr(sections.transitions, "warnings", {})),
            sla_rows=rows(sections.sla),
            routing_rows=rows(routing, [n for n in routing.fields
                                        if n not in {*channel_names, *priority_names}]),
            channel_rows=rows(routing, channel_names), priority_rows=rows(routing, priority_names),
            targeting_rows=rows(sections.targeting), statuses=Status.values,
            preview=_dump(state["document"]),
            other_error_list=_flat(state["other_errors"]), other_warning_list=_flat(state["other_warnings"]),
        )
        return TemplateResponse(request, TEMPLATES + "editor.html",
                                self._context(request, state.pop("queue"), title, **state))

    def versions_view(self, request, queue_id: int):
        self._require(request)
        queue = get_object_or_404(Queue, pk=queue_id)
        versions = list(QueueConfig.objects.filter(queue=queue).order_by("-version")
                        .select_related("created_by", "published_by", "based_on"))
        return TemplateResponse(request, TEMPLATES + "history.html", self._context(
            request, queue, f"{queue.name}: configuration versions", versions=versions,
            active=next((v for v in versions if v.is_active), None)))

    def _diff_context(self, request, queue: Queue, a_pk: int | None, b_pk: int | None, **extra) -> dict:
        versions = list(QueueConfig.objects.filter(queue=queue).order_by("-version")
                        .select_related("based_on"))
        by_pk = {v.pk: v for v in versions}
        active = next((v for v in versions if v.is_active), None)
        newest_draft = next((v for v in versions if v.state == ConfigState.DRAFT), None)
        if (a_pk is not None and a_pk not in by_pk) or (b_pk is not None and b_pk not in by_pk):
            raise Http404("No such version of this queue.")
        after = by_pk[b_pk] if b_pk is not None else (newest_draft or active)
        if a_pk is not None:
            before = by_pk[a_pk]
        elif after is not None and after == active:
            before = by_pk.get(after.based_on_id)
        else:
            before = active
        changes = []
        if before is not None and after is not None:
            changes = [{"path": c.path, "kind": c.kind,
                        "before": "" if c.kind == "added" else _dump(c.before),
                        "after": "" if c.kind == "removed" else _dump(c.after)}
                       for c in services.queue_config_diff(services.queue_config_document(before),
                                                           services.queue_config_document(after))]
        return self._context(request, queue, f"{queue.name}: changes between versions", versions=versions,
                             before=before, after=after, changes=changes, active=active, **extra)

    def diff_view(self, request, queue_id: int):
        self._require(request)
        queue = get_object_or_404(Queue, pk=queue_id)
        a_pk, b_pk = self._pk(request.GET.get("a")), self._pk(request.GET.get("b"))
        context = self._diff_context(request, queue, a_pk, b_pk)
        return TemplateResponse(request, TEMPLATES + "diff.html", context)

    def publish_view(self, request, pk: int):
        self._require(request, publish=True)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        draft = get_object_or_404(QueueConfig.objects.select_related("queue"), pk=pk)
        comment = request.POST.get("comment", "")[:2000].replace("\x00", "")
        try:
            config = services.queue_config_publish_draft(draft=draft, user=request.user, comment=comment,
                                                         rebase=request.POST.get("rebase") == "1")
        except ApplicationError as exc:
            extra: dict[str, Any] = {"failure": exc.message, "failure_list": _flat(exc.errors)}
            if exc.code == "rebase_needed":
                extra["rebase_onto"] = selectors.queue_config_active(draft.queue)
            context = self._diff_context(request, draft.queue, None, draft.pk, **extra)
            return TemplateResponse(request, TEMPLATES + "diff.html", context, status=exc.status_code)
        self.message_user(request, f"Version {config.version} published and active.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:cases_queueconfig_versions", args=[config.queue_id]))

    def rollback_view(self, request, pk: int):
        self._require(request, publish=True)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        config = get_object_or_404(QueueConfig, pk=pk, state=ConfigState.PUBLISHED)
        try:
            new = services.queue_config_rollback(config=config, user=request.user)
        except ApplicationError as exc:
            self.message_user(request, f"Version {config.version} cannot be published again: {exc.message} "
                                       + "; ".join(_flat(exc.errors)), messages.ERROR)
        else:
            self.message_user(request, f"Version {config.version}'s content is active again as version "
                                       f"{new.version}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:cases_queueconfig_versions", args=[config.queue_id]))

    def rename_view(self, request, queue_id: int):
        self._require(request, publish=True)
        queue = get_object_or_404(Queue, pk=queue_id)
        active = selectors.queue_config_active(queue)
        names = list(((active.fields_schema or {}).get("properties") or {}) if active else {})
        form = RenameFieldForm(request.POST or None, names=names)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                config = services.queue_config_field_rename(queue=queue, old=data["old"], new=data["new"],
                                                            user=request.user, comment=data["comment"])
            except ApplicationError as exc:
                for key, msgs in exc.errors.items():
                    form.add_error(key if key in form.fields else None, msgs)
            else:
                # The service renames every case's key; those now holding the new name are the migrated ones.
                migrated = Case.objects.filter(queue=queue, fields__has_key=data["new"]).count()
                self.message_user(request, f"Field '{data['old']}' renamed to '{data['new']}': {migrated} "
                                           f"case(s) migrated; version {config.version} is active.",
                                  messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:cases_queueconfig_versions", args=[queue.pk]))
        return TemplateResponse(request, TEMPLATES + "rename.html", self._context(
            request, queue, f"{queue.name}: rename a field", form=form))


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} s"


def _count(value: int | None) -> str:
    return "—" if value is None else str(value)


def _whatif_rows(whatif) -> dict:
    """The what-if as table rows: (label, actual, draft), then load per agent."""
    actual, draft = whatif.actual, whatif.draft
    summary = [("cases that arrived", whatif.cases, whatif.cases),
               ("assigned", actual.assigned, draft.assigned),
               ("never assigned", actual.waiting_unassigned, draft.waiting_unassigned),
               ("median wait", _seconds(actual.median_wait_s), _seconds(draft.median_wait_s)),
               ("p90 wait", _seconds(actual.p90_wait_s), _seconds(draft.p90_wait_s)),
               ("waited for a skill", _count(actual.waited_for_skill), _count(draft.waited_for_skill)),
               ("waited for capacity", _count(actual.waited_for_capacity), _count(draft.waited_for_capacity)),
               ("waited for an agent to be available", _count(actual.waited_for_presence),
                _count(draft.waited_for_presence))]
    agents = sorted({*actual.load_by_agent, *draft.load_by_agent})
    load = [(name, actual.load_by_agent.get(name, 0), draft.load_by_agent.get(name, 0)) for name in agents]
    return {"summary": summary, "load": load}
