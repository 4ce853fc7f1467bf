"""Form fields generated from a queue's JSON Schema (admin), and the admin's action forms."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.utils.html import escape

from apps.assignment.models import Agent
from apps.cases.models import Queue, Status

PREFIX = "df_"


def schema_form_fields(schema: dict) -> dict[str, forms.Field]:
    """One form field per schema property: string (enum -> choice, format date -> date), integer,
    number, boolean. Bounds and lengths are left to the JSON Schema validation, which reports them."""
    required = set(schema.get("required", []))
    result: dict[str, forms.Field] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type")
        # Editors write these texts; Django's admin and form templates print help text as HTML
        # (`|safe`), so every one is escaped here, where it enters a form.
        options: dict[str, Any] = {
            "required": name in required and kind != "boolean",
            "label": escape(prop.get("title") or name.replace("_", " ").capitalize()),
            "help_text": escape(prop.get("description", "")),
        }
        if kind == "string" and "enum" in prop:
            choices = [("", "---------")] + [(v, escape(v)) for v in prop["enum"]]
            field: forms.Field = forms.ChoiceField(choices=choices, **options)
        elif kind == "string" and prop.get("format") == "date":
            field = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), **options)
        elif kind == "string":
            field = forms.CharField(max_length=prop.get("maxLength"), **options)
        elif kind == "integer":
            field = forms.IntegerField(**options)
        elif kind == "number":
            field = forms.FloatField(**options)
        elif kind == "boolean":
            field = forms.NullBooleanField(**options)
        else:
            continue
        result[PREFIX + name] = field
    return result


def form_to_fields(cleaned: dict, schema: dict) -> dict:
    """The dynamic-field values of a cleaned form, JSON-ready (empty values left out)."""
    values: dict[str, Any] = {}
    for name in (schema.get("properties") or {}):
        value = cleaned.get(PREFIX + name)
        if value is None or value == "":
            continue
        if isinstance(value, datetime.date):
            value = value.isoformat()
        values[name] = value
    return values


class AssignForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=Agent.objects.order_by("display_name"), required=False,
                                   empty_label="(unassign)")


class StatusForm(forms.Form):
    status = forms.ChoiceField(choices=Status.choices)
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class TransferForm(forms.Form):
    queue = forms.ModelChoiceField(queryset=Queue.objects.filter(is_active=True))
    reason = forms.CharField(required=False)


class LegacyTransferForm(forms.Form):
    legacy_ref = forms.CharField(required=False, label="Legacy CRM reference")
    reason = forms.CharField(required=False)
